"""The owner's authentication of a release and the prover's trajectory commitment (issue 23): release
manifests carry a MAC under the owner's verification key, a bundle's Merkle root fixes every segment."""

from __future__ import annotations

import json
import os
import stat
import warnings

import numpy as np
import pytest

from pudlab.errors import BundleError, ObfuscationError
from pudlab.io import read_json, write_json
from pudlab.model import ModelConfig, initial_state
from pudlab.obfuscation import (
    AUTHENTICATED_FIELDS,
    KeyFileWarning,
    ReleaseKey,
    release,
    release_manifest,
)
from pudlab.pol import forgers
from pudlab.pol.bundle import open_bundle, reseal_bundle
from pudlab.pol.commitment import merkle_path, merkle_root, segment_leaf, verify_path
from pudlab.pol.manifest import MANIFEST_FILE, NoiseClaim
from pudlab.pol.prover import prove
from pudlab.pol.verdict import catch_probability
from pudlab.release_auth import VerificationKey, read_release_manifest
from pudlab.train.trainer import TrainConfig

from .conftest import make_images

KEY = ReleaseKey.from_insecure_seed(11)


@pytest.fixture(scope="module")
def released():
    data = make_images(40, seed=3)
    shared = release(data, sigma=0.2, key=KEY, fraction=0.5)
    return shared, release_manifest(shared, sigma=0.2, fraction=0.5, clip=False, key=KEY)


# ------------------------------------------------------------------------------------ release manifests
def test_release_manifest_authenticates_under_the_owner_key(released):
    shared, manifest = released
    info = read_release_manifest(manifest, verification_key=VerificationKey.of(KEY))
    assert info.authenticated and (info.sigma, info.fraction, info.clip, info.key_id) == (0.2, 0.5, False, KEY.key_id)
    assert info.num_samples == 40 and manifest["authentication"]["key_id"] == KEY.key_id
    assert not read_release_manifest(manifest).authenticated  # without the key: a claim, not evidence
    # informational fields added later (pudlab obfuscate adds file, dataset) are not covered
    assert read_release_manifest({**manifest, "file": "x.npz"}, verification_key=VerificationKey.of(KEY)).authenticated
    assert set(AUTHENTICATED_FIELDS) >= {"obfuscation", "arrays_sha256", "num_samples"}


@pytest.mark.parametrize("edit", [
    lambda m: m["obfuscation"].update(sigma=1.0),
    lambda m: m["obfuscation"].update(clip=True),
    lambda m: m["arrays_sha256"].update(x="0" * 64),
    lambda m: m.update(num_samples=41),
    lambda m: m["authentication"].update(mac="0" * 64),
    lambda m: m.pop("authentication"),
])
def test_an_edited_release_manifest_is_not_authenticated(released, edit):
    manifest = json.loads(json.dumps(released[1]))
    edit(manifest)
    with pytest.raises(ObfuscationError, match="not authenticated"):
        read_release_manifest(manifest, verification_key=VerificationKey.of(KEY))


def test_another_owners_key_does_not_authenticate(released):
    other = VerificationKey.of(ReleaseKey.from_insecure_seed(12))
    with pytest.raises(ObfuscationError, match=f"released under key {KEY.key_id}"):
        read_release_manifest(released[1], verification_key=other)
    forged = dict(released[1], obfuscation={**released[1]["obfuscation"], "key_id": other.key_id},
                  authentication={**released[1]["authentication"], "key_id": other.key_id})
    with pytest.raises(ObfuscationError, match="MAC does not match"):  # claiming the other key id does not help
        read_release_manifest(forged, verification_key=other)


def test_verification_key_file_is_private_and_no_release_key(tmp_path):
    key = ReleaseKey.generate()
    verification = VerificationKey.of(key)
    verification.write(tmp_path / "owner.verify")
    assert stat.S_IMODE(os.stat(tmp_path / "owner.verify").st_mode) == 0o600
    assert VerificationKey.read(tmp_path / "owner.verify") == verification
    assert key.secret.hex() not in (tmp_path / "owner.verify").read_text() and key.key_id in repr(verification)
    assert verification.secret.hex() not in repr(verification)
    key.write(tmp_path / "release.key")
    with pytest.raises(ObfuscationError, match="secret release key, not a verification key"):
        VerificationKey.read(tmp_path / "release.key")
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ObfuscationError, match="not a verification key file"):
        VerificationKey.read(tmp_path / "junk")


def test_a_key_file_others_can_read_warns(tmp_path):
    key = ReleaseKey.generate()
    key.write(tmp_path / "k.key")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ReleaseKey.read(tmp_path / "k.key") == key  # 0600: no warning
    os.chmod(tmp_path / "k.key", 0o644)
    with pytest.warns(KeyFileWarning, match="mode 0644"):
        assert ReleaseKey.read(tmp_path / "k.key") == key


def test_release_noise_is_unchanged_by_the_authentication(released):
    """The noise of a release is still drawn from (key, sigma, id) alone: the same arrays as before the MAC."""
    data = make_images(40, seed=3)
    again = release(data, sigma=0.2, key=KEY, fraction=0.5)
    np.testing.assert_array_equal(again.images, released[0].images)
    assert release_manifest(again, sigma=0.2, fraction=0.5, clip=False, key=KEY) == released[1]


# ------------------------------------------------------------------------------------ trajectory commitment
def test_merkle_paths_open_one_segment_against_the_root():
    leaves = [segment_leaf(i, i, i + 1, i + 1, f"{i:064x}", f"{i + 1:064x}", np.full((1, 4), i)) for i in range(7)]
    root = merkle_root(leaves)
    for index, leaf in enumerate(leaves):
        assert verify_path(leaf, merkle_path(leaves, index), root)
    assert not verify_path(leaves[3], merkle_path(leaves, 2), root)
    other = segment_leaf(3, 3, 4, 4, f"{3:064x}", f"{4:064x}", np.full((1, 4), 9))  # other batch positions
    assert not verify_path(other, merkle_path(leaves, 3), root)


def test_a_bundle_commits_to_its_trajectory(tmp_path):
    model = ModelConfig((1, 12, 12), (4, 8, 8), hidden=16)
    data = make_images(60, seed=2)
    proof = prove(data, data, model, TrainConfig(epochs=1, batch_size=16, lr=1e-3, shuffle_seed=1),
                  initial_weights=initial_state(model), init_seed=0, noise=NoiseClaim(0.0, 1.0, False),
                  checkpoint_every=2, out=tmp_path / "b", threads=1)
    manifest = open_bundle(proof.path).manifest
    assert manifest.trajectory is not None and manifest.trajectory.segments == 2
    # a forger who edits a checkpoint and updates only the file table is caught by the root
    path = forgers.copy_bundle(proof.path, tmp_path / "c")
    forgers.edit_checkpoint_weights(path, 0, lambda w: {n: t * 1.01 for n, t in w.items()})
    table = read_json(path / MANIFEST_FILE)
    from pudlab.pol.bundle import file_records

    table["files"] = {name: record.to_dict() for name, record in file_records(path).items()}
    write_json(path / MANIFEST_FILE, table)
    with pytest.raises(BundleError, match="trajectory.root"):
        open_bundle(path)
    reseal_bundle(path)  # re-committing is the prover's right: the bundle opens, with another root
    assert open_bundle(path).manifest.trajectory.root != manifest.trajectory.root


def test_catch_probability():
    assert catch_probability(0.0, 8) == 0.0 and catch_probability(1.0, 1) == 1.0
    assert catch_probability(0.25, 8) == pytest.approx(1 - 0.75**8)


BAD_MANIFESTS = {"not JSON": (b"{kind: release", "not valid JSON"), "an array": (b"[1, 2]", "expected a JSON object"),
                 "oversized": (b" " * ((1 << 20) + 1) + b"{}", "1048579 bytes, too large for a release manifest")}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_every_release_manifest_reader_refuses_bad_bytes_naming_the_file(tmp_path, case):
    """The manifest beside a release, a manifest file given to the owner's tools and a bundle's release.json
    are decoded by one reader: the same one-line refusal, each in its own error type, naming its file."""
    from pudlab.errors import DatasetError
    from pudlab.release_auth import load_release_manifest
    from pudlab.releases import read_manifest

    raw, expected = BAD_MANIFESTS[case]
    (tmp_path / "rel.json").write_bytes(raw)
    with pytest.raises(ObfuscationError, match=f"rel.json: {expected}"):
        load_release_manifest(tmp_path / "rel.json")
    with pytest.raises(DatasetError, match=f"rel.json: {expected}"):
        read_manifest(tmp_path / "rel.npz")

    model = ModelConfig((1, 12, 12), (4, 8, 8), hidden=16)
    data = make_images(40, seed=3)
    proof = prove(data, data, model, TrainConfig(epochs=1, batch_size=20, lr=1e-3, shuffle_seed=1),
                  initial_weights=initial_state(model), init_seed=0, noise=NoiseClaim(0.0, 1.0, False),
                  checkpoint_every=2, out=tmp_path / "b", threads=1)
    (proof.path / "release.json").write_bytes(raw)
    table = read_json(proof.path / MANIFEST_FILE)
    write_json(proof.path / MANIFEST_FILE, {**table, "release": "release.json"})
    reseal_bundle(proof.path)  # the file table now commits to the bad release.json
    with pytest.raises(BundleError, match=f"release.json: {expected}"):
        open_bundle(proof.path)
