"""The report of a federated-learning simulation (``pudlab fl report``) on a store written by hand.

Two defences, two rounds, three clients; every number in the tables is computed by hand below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pudlab.cli import cli
from pudlab.fl.records import (
    AggregationRecord,
    ChallengeOutcome,
    ChallengerUtility,
    ClientRecord,
    PolSummary,
    RoundRecord,
    SharedDataPrivacy,
    Submission,
)
from pudlab.fl.spec import SimulationSpec
from pudlab.fl.store import SimulationStore
from pudlab.fl.summary import detection_auc, detection_summary, pol_challenge_scores
from pudlab.report.fl_document import markdown_html, report_section

ROLES = {0: "honest", 1: "honest", 2: "byzantine"}


def _clients(kept: dict[int, bool]) -> tuple[ClientRecord, ...]:
    return tuple(ClientRecord(c, ROLES[c], 100, 8, 8, 1.0, kept[c], kept[c]) for c in ROLES)


def _pol(outcomes: list[ChallengeOutcome]) -> PolSummary:
    submissions = [Submission(c, role, {}, 100, 8, 8) for c, role in ROLES.items()]
    return PolSummary.of(submissions, outcomes)


def _outcome(client: int, distance: float) -> ChallengeOutcome:
    """A challenge with one replayed segment at threshold 1: score = distance, rejected above 1."""
    accepted = distance <= 1.0
    return ChallengeOutcome(client, accepted, "accepted" if accepted else "rejected", (distance,), (1.0,))


UTILITY = ChallengerUtility((0, 1, 2), 300, "server", SharedDataPrivacy(10.5, 0.8), (0.3,), 0.75, 0.875, "chance",
                            0.1, 0.65)


def _records() -> dict[str, list[RoundRecord]]:
    everyone = {0: True, 1: True, 2: True}
    none = [RoundRecord(0, "none", 0.1, 2.3),
            RoundRecord(1, "none", 0.5, 1.5, _clients(everyone), AggregationRecord("fedavg"), (), None, 1.0),
            RoundRecord(2, "none", 0.45, 1.6, _clients(everyone), AggregationRecord("fedavg"), (), None, 1.0)]
    pol = [RoundRecord(0, "pol", 0.1, 2.3),
           RoundRecord(1, "pol", 0.6, 1.2, _clients({0: True, 1: False, 2: False}), AggregationRecord("fedavg"), (),
                       _pol([_outcome(0, 0.5), _outcome(1, 1.5), _outcome(2, 4.0)]), 2.0),
           RoundRecord(2, "pol", 0.7, 1.0, _clients({0: True, 1: True, 2: False}), AggregationRecord("fedavg"), (),
                       _pol([_outcome(0, 0.25), _outcome(2, 8.0)]), 2.0, UTILITY, True)]
    return {"none": none, "pol": pol}


def _meta() -> dict:
    return {"spec": SimulationSpec(source="tiny.toml").to_dict(), "spec_sha256": "0" * 64, "source": "tiny.toml",
            "setup": {"dataset": {"description": "synthetic bars", "eval_size": 60},
                      "clients": [{"client": c, "labels": [c, c + 1], "samples": 100, "role": role, "sigma": 0.3}
                                  for c, role in ROLES.items()]}}


@pytest.fixture
def fl_store(tmp_path: Path) -> Path:
    store = SimulationStore(tmp_path / "store")
    store.write_meta(_meta())
    for defence, records in _records().items():
        for record in records:
            store.save_round(defence, record.round, {"w": torch.zeros(2)}, record, spec_hash="0" * 64)
    return store.root


def test_summary_numbers_by_hand() -> None:
    results = _records()
    pol = detection_summary(results["pol"])
    # honest: in the aggregate 3 of 4 times (client 1 wrongly rejected in round 1); byzantine: never
    assert pol.excluded == {"byzantine": 1.0, "honest": 0.25}
    assert pol.pol is not None and (pol.pol.challenges_issued, pol.pol.cheaters_caught) == (5, 2)
    assert (pol.pol.honest_wrongly_rejected, pol.pol.honest_challenged) == (1, 3)
    assert pol.pol.false_reject_rate == pytest.approx(1 / 3) and pol.pol.caught_rate == 1.0
    assert detection_summary(results["none"]).excluded == {"byzantine": 0.0, "honest": 0.0}
    scores = pol_challenge_scores(results)
    assert scores == {"honest": [0.5, 1.5, 0.25], "byzantine": [4.0, 8.0]}
    auc = detection_auc(scores)
    assert (auc.auc, auc.honest_max_score, auc.cheater_min_score) == (1.0, 1.5, 4.0)


def test_report_tables_by_hand() -> None:
    text = report_section(_meta(), _records(), {"accuracy": "a.png", "detection": "d.png", "pud": "p.png"})
    lines = text.splitlines()
    assert lines[0] == "## Federated learning: tiny"
    assert "| 2 | 2,3 | 100 | byzantine | 0.3 |" in lines
    assert "| no defence (FedAvg) | 2 | 0.4500 | 0.5000 |" in lines  # final round 2, best of rounds 1..2
    assert "| PoL challenges | 2 | 0.7000 | 0.7000 |" in lines
    assert "| defence | honest | byzantine |" in lines
    assert "| no defence (FedAvg) | 0.000 | 0.000 |" in lines and "| PoL challenges | 0.250 | 1.000 |" in lines
    assert "| PoL challenges | 5 | 2/2 (1.000) | 1/3 (0.333) |" in lines
    assert any(line.startswith("- **Utility**") and "reaches 0.750" in line and "gain **+0.650**" in line
               for line in lines)
    assert any("PSNR(T, O(T)) = 10.5 dB" in line for line in lines)
    assert any("honest challenges' largest distance/threshold 1.500, cheaters' smallest 4.000; ROC AUC honest "
               "vs cheaters 1.000" in line for line in lines)
    assert [line for line in lines if line.startswith("![")] == ["![accuracy per round](a.png)",
                                                                 "![detection](d.png)", "![PUD trade-off](p.png)"]


def test_cli_fl_report_writes_markdown_html_and_figures(fl_store: Path) -> None:
    result = CliRunner().invoke(cli, ["fl", "report", str(fl_store)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(fl_store / "report.md")
    text = (fl_store / "report.md").read_text()
    assert text.startswith("# pudlab federated-learning simulation\n\n## Federated learning: tiny\n")
    assert "| PoL challenges | 0.250 | 1.000 |" in text and "![detection](figures/fl_detection.png)" in text
    page = (fl_store / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "missing figure" not in page
    for figure in ("fl_accuracy", "fl_detection", "fl_pud"):
        assert (fl_store / "figures" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (fl_store / "figures" / f"{figure}.svg").read_bytes()[:2000]


def test_cli_fl_report_on_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["fl", "report", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path}: no spec.json (not a pudlab FL store, or "
                                                  "nothing has run yet)"]


def test_markdown_html_escapes_and_embeds(tmp_path: Path) -> None:
    (tmp_path / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    text = ("# Title <x>\n\nplain **bold** and `code`\n\n- item 1\n- item 2\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
            "![fig](f.png)\n\n![gone](none.png)\n")
    page = markdown_html(text, tmp_path, title="T & T")
    assert "<title>T &amp; T</title>" in page and "<h1>Title &lt;x&gt;</h1>" in page
    assert "<p>plain <b>bold</b> and <code>code</code></p>" in page
    assert "<ul><li>item 1</li><li>item 2</li></ul>" in page
    assert "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>" \
        in page
    assert '<img alt="fig" src="data:image/png;base64,iVBORw0KGgo=">' in page
    assert "[missing figure none.png]" in page and "<script" not in page
