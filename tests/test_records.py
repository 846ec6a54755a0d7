"""Every stored record's JSON, byte for byte, against the shapes pudlab wrote before the records helper.

``tests/data/records_v1.json`` holds, per record, the ``to_dict()`` that the hand-written methods
produced (generated once from them, then frozen): files already written by users must still load
and a record must still write the same bytes. Each case builds a record by hand, with the optional
parts both present and absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pudlab.errors import PudlabError
from pudlab.io import to_json
from pudlab.privacy.report import PrivacyReport
from pudlab.records import Record, plain

FIXTURE = Path(__file__).parent / "data" / "records_v1.json"


# ---------------------------------------------------------------------------------------- privacy
def _privacy_cases() -> dict[str, Any]:
    from pudlab.privacy.accounting import ComposedEpsilon, DpAccounting, SensitivityAccounting
    from pudlab.privacy.decline import DeclineRow
    from pudlab.privacy.denoising import (
        BestScores,
        DenoiseGrid,
        DenoiserScores,
        DenoisingResult,
        ImageScores,
    )
    from pudlab.privacy.learned import LabelInference, LearnedDenoiserConfig, LearnedDenoising
    from pudlab.privacy.linkage import LinkageSummary
    from pudlab.privacy.lira import LiraResult
    from pudlab.privacy.membership import MembershipAudit, MembershipResult
    from pudlab.privacy.report import (
        DatasetSummary,
        PrivacyConfig,
        PrivacyReport,
        PudPrivacyInputs,
        SigmaPrivacy,
    )
    from pudlab.privacy.similarity import SimilaritySummary
    from pudlab.privacy.threats import THREAT_MODELS

    similarity = SimilaritySummary(20.5, 20.25, 0.75, 0.625, 0.5, 0.125, 40)
    linkage = LinkageSummary(0.875, 0.005, 200, 40)
    released = ImageScores(20.5, 0.625, 0.875)
    denoising = DenoisingResult(12, {"gaussian": DenoiserScores(1.0, ImageScores(24.0, 0.75, 0.9)),
                                     "tv": DenoiserScores(0.5, ImageScores(23.5, 0.7, 0.85))},
                                released, BestScores(24.0, "gaussian", 0.75, "gaussian", 0.9, "gaussian"))
    decline = {"fresh": [DeclineRow(1, 20.0, 0.1, 1.0, 0.5, 0.5), DeclineRow(2, 23.0, 0.07, 1.0, 0.75, 0.75)],
               "keyed": [DeclineRow(1, 20.0, 0.1, 1.0, 0.5, 0.5)], "disjoint": [DeclineRow(1, 20.0, 0.1, 0.5, 0.5, 0.25)]}
    composed = ComposedEpsilon(2, 3.5, 2.5, 2.5, 4.0)
    dp = DpAccounting(1e-5, "analytic Gaussian", "replace one image",
                      {"image": SensitivityAccounting(12.0, None, None, False, [ComposedEpsilon(1, None, None, None,
                                                                                                None)]),
                       "pixel": SensitivityAccounting(1.0, 2.5, 4.75, False, [composed])})
    membership = MembershipAudit(MembershipResult(0.625, 0.03125, 0.0625, 0.01, 120, 40, 0.25, 0.5), 0.875, 1.5,
                                 "obfuscated")
    labels = LabelInference(0.5, 0.5, 0.375, 0.1)
    learned = LearnedDenoising(25.0, 0.8, 0.95, 12, 100, 2.5, labels)
    lira = LiraResult(2, 0.625, 0.0, 0.05, 0.6, 0.025, 0.075, 120, 40, True, 3.25)
    pud = PudPrivacyInputs(0.95, 0.005, 0.8, 0.625, 0.75, 0.5, 0.1, 0.625)
    full = SigmaPrivacy(0.5, similarity, linkage, denoising, decline, dp, pud,
                        {"similarity_linkage": 0.25, "denoising": 1.0}, membership, learned, lira)
    bare = SigmaPrivacy(0.0, similarity, linkage,
                        DenoisingResult(12, {}, ImageScores(100.0, 1.0), BestScores(100.0, "released", 1.0,
                                                                                      "released")),
                        {"fresh": [DeclineRow(1, 100.0, 0.0, 1.0)]}, dp,
                        PudPrivacyInputs(1.0, 0.005, 1.0, None, 1.0), {"denoising": 0.5})
    config = PrivacyConfig(queries=60, pool_size=200, mia_widths=(4, 4, 8),
                           denoise=DenoiseGrid(gaussian_widths=(1.0,), tv_weights=(1.0, 2.0)),
                           learned_denoiser=LearnedDenoiserConfig(depth=3, channels=8))
    dataset = DatasetSummary("synthetic", "synthetic bars", "ab" * 32, [1, 12, 12], 360, 40)
    report = PrivacyReport("0.1.0", dataset, config, {"torch": "2.x", "threads": 1}, [bare, full], 12.5)
    timed = PrivacyReport("0.1.0", dataset, config, {}, [full], 12.5, command_wall_seconds=14.0, torch_threads=2)
    return {"privacy.SimilaritySummary": similarity, "privacy.LinkageSummary": linkage,
            "privacy.ImageScores": released, "privacy.ImageScores.no_pool": ImageScores(20.5, 0.625),
            "privacy.DenoisingResult": denoising, "privacy.DeclineRow": decline["fresh"][0],
            "privacy.DeclineRow.no_pool": DeclineRow(3, 21.0, 0.09, 0.75),
            "privacy.ComposedEpsilon": composed, "privacy.DpAccounting": dp, "privacy.MembershipAudit": membership,
            "privacy.MembershipResult": membership.attack, "privacy.LabelInference": labels,
            "privacy.LearnedDenoising": learned,
            "privacy.LearnedDenoising.no_labels": LearnedDenoising(25.0, 0.8, None, 12, 100, 2.5),
            "privacy.LiraResult": lira, "privacy.PudPrivacyInputs": pud, "privacy.SigmaPrivacy": full,
            "privacy.SigmaPrivacy.bare": bare, "privacy.PrivacyConfig": config, "privacy.DatasetSummary": dataset,
            "privacy.PrivacyReport": report, "privacy.PrivacyReport.timed": timed,
            "privacy.ThreatModel": THREAT_MODELS["pool"]}


# ---------------------------------------------------------------------------------------- privacy: DP-SGD
def _dp_cases() -> dict[str, Any]:
    """``pudlab compare-dp``'s records (frozen from the hand-written methods they had before the helper)."""
    from pudlab.privacy.dp_results import (
        Band,
        ComparisonConfig,
        ComparisonDataset,
        ComparisonPoint,
        ComparisonReport,
        MatchedPair,
        ReleaseLeak,
        RepeatResult,
    )
    from pudlab.privacy.dpsgd import DpSgdConfig, DpSgdRecord
    from pudlab.privacy.linkage import LinkageSummary
    from pudlab.privacy.lira import LiraResult
    from pudlab.privacy.similarity import SimilaritySummary

    lira = LiraResult(2, 0.625, 0.0, 0.05, 0.6, 0.025, 0.075, 120, 40, True, 3.25)
    release = ReleaseLeak(SimilaritySummary(20.5, 20.25, 0.75, 0.625, 0.5, 0.125, 40),
                          LinkageSummary(0.875, 0.005, 200, 40))
    obfuscated_runs = [RepeatResult(0, 0.875, 0.5625, 0.03125, lira, 3.5, 1.25, 4.5, release),
                       RepeatResult(1, 0.75, 0.5, 0.0, None, 2.5, 1.0, 2.0, release)]
    private_runs = [RepeatResult(0, 0.625, 0.5, 0.015625, lira, 4.0, 2.0, 5.0),
                    RepeatResult(1, 0.5, 0.53125, 0.0, lira, 4.5, 2.5, 5.5)]
    record = DpSgdRecord(1.0, 1.0, 0.125, "poisson", 160, "rdp", 1e-5, 2.5, 6.25, 7)
    control_record = DpSgdRecord(0.0, 1.0, 0.125, "poisson", 160, "rdp", 1e-5, None, None, 0)
    release_names = ("release, image sensitivity, replace-one", "release, pixel sensitivity, replace-one")
    dp_names = ("DP-SGD, add/remove (rdp)", "DP-SGD, replace-one (group-privacy bound, RDP)")
    obfuscated = ComparisonPoint("obfuscation", 0.5, False, 12.5, dict(zip(release_names, (12.5, 0.75), strict=True)),
                                 obfuscated_runs, 9.5)
    private = ComparisonPoint("dp-sgd", 1.0, False, 2.5, dict(zip(dp_names, (2.5, 6.25), strict=True)), private_runs,
                              12.0, record, 2.5)
    control = ComparisonPoint("dp-sgd", 0.0, True, None, dict.fromkeys(dp_names), private_runs[:1], 6.0,
                              control_record)
    pair = MatchedPair("accuracy", obfuscated.label, private.label, (0.8125, 0.5625), "lira_tpr_at_1pct",
                       Band(0.075, 0.0, 0.075, 0.075, 1), Band(0.075, 0.0, 0.075, 0.075, 2),
                       "no clear difference (ranges over repeats overlap)")
    config = ComparisonConfig(sigmas=(0.0, 0.5), noise_multipliers=(0.0, 1.0), target_epsilons=(2.5,), repeats=2,
                              members=120, nonmembers=40, epochs=2, batch_size=16, widths=(4, 4, 8), hidden=16,
                              lira_shadows=2, pool_size=200)
    dataset = ComparisonDataset("synthetic", "synthetic bars", "ab" * 32, (1, 12, 12), 120, 40, 40)
    report = ComparisonReport("0.1.0", dataset, config, {"torch": "2.x", "opacus": "1.6.0"},
                              [obfuscated, private, control], [2.75, 3.25], [pair], 30.5)
    timed = ComparisonReport("0.1.0", dataset, config, {}, [private], [2.75], [], 30.5, ["a note"], 0.546875, 40.25,
                             2)
    return {"privacy.DpSgdConfig": DpSgdConfig(),
            "privacy.DpSgdConfig.no_clip": DpSgdConfig(0.0, None, 0.25, "shuffle", "prv", 1e-6, 3),
            "privacy.DpSgdRecord": record, "privacy.DpSgdRecord.control": control_record,
            "privacy.ReleaseLeak": release, "privacy.RepeatResult": obfuscated_runs[0],
            "privacy.RepeatResult.bare": private_runs[1], "privacy.Band": Band(0.8125, 0.125, 0.75, 0.875, 2),
            "privacy.ComparisonPoint": obfuscated, "privacy.ComparisonPoint.dp": private,
            "privacy.ComparisonPoint.control": control, "privacy.MatchedPair": pair,
            "privacy.ComparisonConfig": config, "privacy.ComparisonDataset": dataset,
            "privacy.ComparisonReport": report, "privacy.ComparisonReport.timed": timed}


# ---------------------------------------------------------------------------------------- fl
def _fl_cases() -> dict[str, Any]:
    from pudlab.fl.records import (
        AggregationRecord,
        ChallengeOutcome,
        ChallengerUtility,
        ClientRecord,
        PolSummary,
        RoundRecord,
        SharedDataPrivacy,
    )
    from pudlab.fl.robustness import RobustnessTable
    from pudlab.fl.summary import DetectionAuc, DetectionSummary, PolTotals

    honest = ChallengeOutcome(0, True, "accepted", (0.5, 0.25), (1.0, 1.0), 0.75, "honest")
    cheater = ChallengeOutcome(2, False, "rejected: distance", (3.0,), (0.0,), 0.5, "byzantine")
    unreplayed = ChallengeOutcome(3, False, "claims: lr too large")
    pol = PolSummary(3, (0, 2, 3), (2, 3), 1, 0, 2, 2, (honest, cheater, unreplayed))
    clients = (ClientRecord(0, "honest", 100, 8, 8, 0.5, True, True),
               ClientRecord(2, "byzantine", 100, 8, 8, 9.5, False, False))
    krum = AggregationRecord("multikrum", None, 1, 3, (0, 1, 4), {0: 1.5, 1: 2.0, 10: 2.5, 4: 3.0})
    privacy = SharedDataPrivacy(18.5, 0.75)
    utility = ChallengerUtility((0, 1), 200, "server", privacy, (0.5,), 0.75, 0.875, "chance", 0.1, 0.65)
    unmeasured = ChallengerUtility((), 0, "server", None, (0.5,))
    full = RoundRecord(1, "both", 0.625, 1.25, clients, krum, ((0.0, 1.5), (1.5, 0.0)), pol, 3.5, utility, True)
    initial = RoundRecord(0, "both", 0.125, 2.25)
    totals = PolTotals(6, 4, 3, 2, 1, 0.75, 0.5, {"byzantine": 1.0, "honest": 0.5})
    table = RobustnessTable("tiny", ("fedavg", "median"), ("clean", "alie"), (1, 2),
                            {"fedavg": {"clean": {"none": 0.5, "pol": 0.625}, "alie": {"none": 0.25, "pol": 0.5}},
                             "median": {"clean": {"none": 0.5, "pol": 0.5}, "alie": {"none": 0.375, "pol": 0.5}}},
                            {"fedavg": {"clean": [0, 0], "alie": [2, 3]}, "median": {"clean": [0, 0], "alie": [1, 2]}},
                            9.5)
    return {"fl.ChallengeOutcome": honest, "fl.ChallengeOutcome.zero_threshold": cheater,
            "fl.ChallengeOutcome.unreplayed": unreplayed, "fl.PolSummary": pol, "fl.ClientRecord": clients[1],
            "fl.AggregationRecord.multikrum": krum,
            "fl.AggregationRecord.median": AggregationRecord("median", None, 1, None, (0, 1), {0: 0.5, 1: 0.5}),
            "fl.AggregationRecord.fallback": AggregationRecord("fedavg", "only 2 updates left", None, None, (0, 1),
                                                               {0: 0.5, 1: 0.5}),
            "fl.AggregationRecord.none": AggregationRecord("none", reason="every update was rejected"),
            "fl.SharedDataPrivacy": privacy, "fl.SharedDataPrivacy.no_noise": SharedDataPrivacy(None, 0.0),
            "fl.ChallengerUtility": utility, "fl.ChallengerUtility.unmeasured": unmeasured,
            "fl.RoundRecord": full, "fl.RoundRecord.initial": initial,
            "fl.RoundRecord.initial_utility": RoundRecord(0, "pol", 0.125, 2.25, utility=utility,
                                                          utility_measured=True),
            "fl.RoundRecord.no_pol": RoundRecord(2, "none", 0.5, 1.5, clients,
                                                 AggregationRecord("fedavg", selected_clients=(0, 2),
                                                                   scores={0: 0.5, 2: 0.5}),
                                                 ((0.0, 9.0), (9.0, 0.0)), None, 1.25, None, True),
            "fl.PolTotals": totals, "fl.DetectionSummary": DetectionSummary({"byzantine": 1.0, "honest": 0.0},
                                                                            totals),
            "fl.DetectionSummary.no_pol": DetectionSummary({"honest": 0.25}),
            "fl.DetectionAuc": DetectionAuc(1.0, 0.5, 3.0), "fl.RobustnessTable": table}


# ---------------------------------------------------------------------------------------- pol
def _manifest() -> Any:
    from pudlab.model import ModelConfig
    from pudlab.pol.manifest import (
        ArrayRecord,
        CheckpointRecord,
        FileRecord,
        InitRecord,
        Manifest,
        NoiseClaim,
        ScheduleRecord,
        SharedRecord,
        TrajectoryRecord,
    )
    from pudlab.train.trainer import TrainConfig

    sha = "0123456789abcdef" * 4
    return Manifest(
        ModelConfig((1, 12, 12), (4, 4, 8), 16, 10), TrainConfig(epochs=2, batch_size=32, lr=1e-3, shuffle_seed=7),
        InitRecord("initial.safetensors", 3, sha), NoiseClaim(0.5, 1.0, False, "fedcba9876543210"),
        SharedRecord(60, 10, ArrayRecord("shared/x.npy", sha, "<f4", (60, 1, 12, 12)),
                     ArrayRecord("shared/y.npy", sha)),
        ScheduleRecord(4, 2, 2, ArrayRecord("batches.npy", sha, "<i8", (4, 32))),
        (CheckpointRecord(2, "checkpoints/step2.safetensors", 2), CheckpointRecord(4, "checkpoints/step4.safetensors",
                                                                                 4)),
        sha, {name: FileRecord(sha, 256 + index) for index, name in enumerate(
            ("initial.safetensors", "shared/x.npy", "shared/y.npy", "batches.npy", "checkpoints/step2.safetensors",
             "checkpoints/step4.safetensors", "release.json"))},
        {"torch_threads": 1}, {"dataset": "synthetic"}, TrajectoryRecord("merkle-sha256/pudlab-segments-v1", sha, 2),
        "release.json")


def _pol_cases() -> dict[str, Any]:
    from pudlab.model import ModelConfig
    from pudlab.pol import DetectionReport
    from pudlab.pol.evaluation import EvaluationConfig
    from pudlab.pol.evaluation_results import AttackOutcome, SigmaRow, TrialOutcome, VerdictSummary
    from pudlab.pol.manifest import NoiseClaim
    from pudlab.pol.policy import Check, VerifyPolicy
    from pudlab.pol.verdict import Challenge, DriftLimit, SegmentResult, Verdict

    passing = SegmentResult(3, 1, 6, 8, 0.5, 0.0, 0.0, [], "selected", [0.0, 0.0], [0.0, 0.0], 0.5, 1.3, True)
    failing = SegmentResult(1, 0, 2, 4, 0.0, 0.25, 0.0, [0.01, 0.02], "start-state", [0.5, 0.25], [0.125, 0.0625],
                            0.75, math.inf, False)
    verdict = Verdict(False, "segment 1: weights distance", "bundle", "ab" * 32, 0.5, "auto",
                      [Check("hyperparameters", True, "within bounds"), Check("init", False, "no seed")],
                      [passing, failing], 4, 1, 2.5)
    undecidable = Verdict(False, "undecidable at sigma 0.5", "bundle", "cd" * 32, 0.5, "auto",
                          [Check("release", True, "authenticated")], [passing], 4, 1, 2.5, "undecidable",
                          Challenge(12345, "ef" * 32, 8, (0, 1, 2, 3), 4), DriftLimit(1.25, 2.0, 0.5),
                          {"key_id": "fedcba9876543210", "authenticated": True, "insecure": False})
    summary = VerdictSummary(True, "accepted", 0.125, 0.25, 0.5, (passing,), 1.5)
    spoof = VerdictSummary(False, "rejected", 2.0, 3.0, None, (failing,), 1.25)
    row = SigmaRow(0.5, 3, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.75, 0.25, 0.125, 0.0625, 2.0, 0.5, 0.75, 0.5, None,
                   1.0, None, True)
    attack = AttackOutcome(0.5, "thief-jump", 1, 1, "rejected", 4.5)
    config = EvaluationConfig(sigmas=(0.0, 0.5), trials=1, epochs=1)
    report = DetectionReport({"name": "synthetic", "split_seed": 0}, config, ModelConfig((1, 12, 12), (4, 4, 8), 16),
                             32, "auto", (row,), (TrialOutcome(0, 0.5, summary, spoof, 1.875),),
                             (attack, AttackOutcome(0.5, "checkpoint-edit-unsealed", 2, 0, "accepted", None)), 1,
                             {"torch": "2.x"}, 30.5)
    return {"pol.Manifest": _manifest(), "pol.NoiseClaim.no_key": NoiseClaim(0.0, 0.5, True),
            "pol.VerifyPolicy": VerifyPolicy(), "pol.SegmentResult": passing,
            "pol.SegmentResult.failing": failing, "pol.Verdict": verdict, "pol.Verdict.undecidable": undecidable,
            "pol.VerdictSummary": spoof,
            "pol.SigmaRow": row, "pol.AttackOutcome": attack, "pol.EvaluationConfig": config,
            "pol.DetectionReport": report}


# ---------------------------------------------------------------------------------------- pud
def _pud_cases() -> dict[str, Any]:
    from pudlab.pud.profiles import Constraint, Profile, Recommendation
    from pudlab.pud.scores import PudPoint

    point = PudPoint(0.5, 0.625, 0.75, 0.875, {"accuracy": 0.9, "delta": 0.25})
    other = PudPoint(1.0, 0.875, 0.5, 0.25)
    profile = Profile("outsourcing", "keep it private", (Constraint("privacy", minimum=0.5),
                                                         Constraint("utility", 0.25, 0.9)),
                      "utility", "maximize", source="profile.toml")
    recommendation = Recommendation(profile, point, None, other, (0.5,), {0.5: (), 1.0: ("utility >= 0.6",)}, None,
                                    "sigma 0.5")
    return {"pud.PudPoint": point, "pud.PudPoint.no_raw": other, "pud.Profile": profile,
            "pud.Recommendation": recommendation}


def cases() -> dict[str, Any]:
    """Every case: name -> record."""
    return {**_privacy_cases(), **_dp_cases(), **_fl_cases(), **_pol_cases(), **_pud_cases()}


def _expected() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def test_fixture_covers_every_case() -> None:
    assert sorted(_expected()) == sorted(cases())


@pytest.mark.parametrize("name", sorted(cases()))
def test_record_writes_the_frozen_json(name: str) -> None:
    record = cases()[name]
    expected = _expected()[name]
    assert to_json(record.to_dict()) == to_json(expected)


WRITE_ONLY = ("privacy.ThreatModel", "privacy.Band", "fl.DetectionAuc", "pol.NoiseClaim.no_key", "pol.VerifyPolicy",
              "pol.SegmentResult", "pol.SegmentResult.failing", "pol.Verdict", "pol.Verdict.undecidable",
              "pol.VerdictSummary", "pol.SigmaRow",
              "pol.AttackOutcome", "pol.EvaluationConfig", "pol.DetectionReport", "pud.Profile", "pud.Recommendation")
"""Records pudlab writes but never reads back."""


@pytest.mark.parametrize("name", sorted(set(cases()) - set(WRITE_ONLY)))
def test_frozen_json_reads_back_unchanged(name: str) -> None:
    """``from_dict`` of the frozen JSON writes the same bytes again (files on disk keep loading)."""
    record = cases()[name]
    expected = _expected()[name]
    loaded = type(record).from_dict(json.loads(json.dumps(expected)))
    assert to_json(loaded.to_dict()) == to_json(expected)


if __name__ == "__main__":  # regenerate the fixture (only ever from the code that defines the format)
    FIXTURE.write_text(to_json({name: record.to_dict() for name, record in cases().items()}) + "\n")


# ---------------------------------------------------------------------------------------- the helper
@dataclass(frozen=True)
class _Inner(Record):
    a: int
    b: float | None = None

    OMIT_NONE = ("b",)


@dataclass(frozen=True)
class _Outer(Record):
    name: str
    inner: _Inner
    flat: _Inner
    values: tuple[float, ...] = ()
    pair: tuple[int, str] | None = None
    by_client: dict[int, float] = field(default_factory=dict)
    nested: dict[str, list[_Inner]] = field(default_factory=dict)
    label: str | int | None = None

    FLATTEN = ("flat",)
    RENAMED = {"name": "title"}
    DERIVED = ("size",)

    @property
    def size(self) -> int:
        return len(self.values)


OUTER = _Outer("x", _Inner(1, 0.5), _Inner(2), (1.0, 2), (3, "c"), {10: 0.25, 2: 0.75}, {"k": [_Inner(4)]}, 7)


def test_helper_writes_by_name_and_reads_back() -> None:
    data = OUTER.to_dict()
    assert data == {"title": "x", "inner": {"a": 1, "b": 0.5}, "a": 2, "values": [1.0, 2], "pair": [3, "c"],
                    "by_client": {"10": 0.25, "2": 0.75}, "nested": {"k": [{"a": 4}]}, "label": 7, "size": 2}
    loaded = _Outer.from_dict(json.loads(json.dumps(data)))
    assert loaded == OUTER and isinstance(loaded.values, tuple) and isinstance(loaded.nested["k"], list)
    assert list(loaded.by_client) == [10, 2] and type(loaded.values[1]) is int  # keys read back, values untouched
    assert to_json(loaded.to_dict()) == to_json(data)
    assert plain({"t": (1, (2, 3)), 4: None}) == {"t": [1, [2, 3]], "4": None}


@pytest.mark.parametrize(("change", "message"), [
    ({"extra": 1}, r"outer: unknown key\(s\) \['extra'\]; known: title, inner, values"),
    ({"title": None}, r"outer.title: expected a string, got None"),
    ({"inner": {"b": 1.0}}, r"outer.inner: missing key\(s\) \['a'\]; expected a"),
    ({"inner": [1]}, r"outer.inner: expected an object, got list"),
    ({"values": 3.0}, r"outer.values: expected a list of numbers, got float"),
    ({"values": [1.0, "2"]}, r"outer.values\[1\]: expected a number, got '2'"),
    ({"values": [True]}, r"outer.values\[0\]: expected a number, got True"),
    ({"pair": [1]}, r"outer.pair: expected a list of 2 items, got 1 item\(s\)"),
    ({"by_client": {"one": 0.5}}, r"outer.by_client: key 'one' is not an integer"),
    ({"nested": {"k": [{"a": "4"}]}}, r"outer.nested.k\[0\].a: expected an integer, got '4'"),
    ({"label": 1.5}, r"outer.label: expected a string or an integer or null, got 1.5"),
])
def test_helper_errors_name_where_and_what(change: dict, message: str) -> None:
    with pytest.raises(PudlabError, match=message):
        _Outer.from_dict({**OUTER.to_dict(), **change}, where="outer")


def test_helper_missing_flattened_keys_and_derived_keys() -> None:
    data = OUTER.to_dict()
    del data["a"]
    with pytest.raises(PudlabError, match=r"outer: missing key\(s\) \['a'\]"):  # the flattened record's key
        _Outer.from_dict(data, where="outer")
    assert _Outer.from_dict({**OUTER.to_dict(), "size": 99}) == OUTER  # derived: written, never read
    with pytest.raises(PudlabError, match=r"_Outer: expected an object, got list"):
        _Outer.from_dict([])
    with pytest.raises(TypeError, match="not a record"):
        plain(_Plain(1))


@dataclass(frozen=True)
class _Plain:
    x: int


def test_privacy_report_errors_name_the_file() -> None:
    report = cases()["privacy.PrivacyReport"].to_dict()
    report["sigmas"][1]["dp"]["by_sensitivity"]["image"]["composition"][0]["n"] = "one"
    with pytest.raises(PudlabError, match=r"^privacy.json: sigmas\[1\].dp.by_sensitivity.image.composition\[0\].n: "
                                          "expected an integer, got 'one'$"):
        PrivacyReport.from_dict(report, where="privacy.json")


def test_round_record_keeps_whether_utility_was_due() -> None:
    from pudlab.fl.records import RoundRecord

    due = {"round": 0, "defence": "pol", "accuracy": 0.1, "loss": 2.0, "utility": None}
    assert RoundRecord.from_dict(due).utility_measured and RoundRecord.from_dict(due).to_dict() == due
    assert not RoundRecord.from_dict({k: v for k, v in due.items() if k != "utility"}).utility_measured
