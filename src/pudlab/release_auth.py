"""The owner's authentication of a release manifest: its checked reader (:func:`read_release_manifest`)
and the owner's verification key that authenticates it. (:mod:`pudlab.releases` reads a release file
with its manifest for an audit and checks the arrays' hashes; this module checks who made it.)

A release manifest (written by :func:`pudlab.obfuscation.release_manifest`, by ``pudlab obfuscate``
beside each ``.npz`` and by ``pudlab pol prove`` as ``release.json`` in a proof bundle) is JSON::

    kind "pudlab.release", format 1
    obfuscation     {sigma, fraction, clip, key_id, key, insecure_seed (INSECURE demo keys only)}
    noise_model, selection, in_the_clear          the noise in words
    sampling_recipe, num_samples, num_obfuscated
    arrays_sha256   {x, y, ids}                   pudlab.data.dataset.fingerprint_arrays of each array
    authentication  {scheme "hmac-sha256/pudlab-release-v1", key_id, mac}
    ...             informational fields added later (dataset, description, file), not authenticated

**Trust model.** ``mac`` is HMAC-SHA256, under the owner's *verification key*, of the canonical JSON of
:data:`pudlab.obfuscation.AUTHENTICATED_FIELDS`. The verification key is HMAC-SHA256(release key, a fixed
label): it reveals nothing of the release key (so its holder cannot regenerate the noise and recover
T), and only the owner (who holds the release key) and whoever the owner gave the verification key to
can make a valid MAC. A verifier obtains the verification key from the owner out of band (a file
``pudlab-release-verification-key-v1 <key id> <64 hex digits>``, written by ``pudlab pol owner-key``)
and keeps it from provers: a MAC is symmetric, so a prover who held it could authenticate a release
of other data. Without the verification key, a release manifest is a claim, not evidence.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pudlab.errors import ObfuscationError
from pudlab.obfuscation import (
    MAC_SCHEME,
    ReleaseKey,
    _write_private,
    key_file_exposure,
    release_mac,
)
from pudlab.records import Record

VERIFICATION_KEY_HEADER = "pudlab-release-verification-key-v1"
"""First word of a verification key file: ``<header> <key id> <64 hex digits>``."""
_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class VerificationKey:
    """The owner's verification key of release manifests, and the id of the release key it belongs to.

    Not the release key: it cannot regenerate the noise. ``repr`` shows the key id only."""

    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not _KEY_ID_RE.fullmatch(self.key_id) or len(self.secret) != 32:
            raise ObfuscationError("a verification key is a 16-hex-digit key id and 32 bytes")

    def __repr__(self) -> str:
        return f"VerificationKey(key_id={self.key_id!r})"

    __str__ = __repr__

    @classmethod
    def of(cls, key: ReleaseKey) -> VerificationKey:
        """The verification key of a release key (what the owner hands to verifiers)."""
        return cls(key.key_id, key.verification_secret())

    def write(self, path: str | os.PathLike) -> None:
        """Write a new verification key file (mode 0600, atomic; never overwrites)."""
        target = Path(path)
        if target.exists():
            raise ObfuscationError(f"{target}: already exists; a key file is never overwritten")
        _write_private(target, f"{VERIFICATION_KEY_HEADER} {self.key_id} {self.secret.hex()}\n", replace=False)

    @classmethod
    def read(cls, path: str | os.PathLike) -> VerificationKey:
        """Read a verification key file; a one-line error naming the file otherwise (never its content).
        A release key file is refused: it would let the verifier remove the noise."""
        path = Path(path)
        try:
            raw = path.read_bytes()[:4096].decode("ascii", errors="replace")
        except FileNotFoundError:
            raise ObfuscationError(f"{path}: verification key file not found") from None
        except IsADirectoryError:
            raise ObfuscationError(f"{path}: is a directory, not a verification key file") from None
        words = raw.split()
        if words[:1] == ["pudlab-release-key-v1"]:
            raise ObfuscationError(f"{path}: is a secret release key, not a verification key; never give it to a "
                                   f"verifier (it removes the noise); make one with `pudlab pol owner-key {path}`")
        if len(words) != 3 or words[0] != VERIFICATION_KEY_HEADER or not _KEY_ID_RE.fullmatch(words[1]) \
                or not _SHA_RE.fullmatch(words[2]):
            raise ObfuscationError(f"{path}: not a verification key file (expected one line "
                                   f"'{VERIFICATION_KEY_HEADER} <key id> <64 lowercase hex digits>')")
        return cls(words[1], bytes.fromhex(words[2]))


@dataclass(frozen=True)
class ReleaseInfo(Record):
    """What a release manifest says, parsed (see the module docstring)."""

    sigma: float
    fraction: float
    clip: bool
    key_id: str
    num_samples: int
    x_sha256: str
    y_sha256: str
    ids_sha256: str | None
    insecure_seed: int | None
    """Set when the key was derived from a public seed (a demo: no privacy)."""
    authenticated: bool
    """The MAC was checked under the owner's verification key and is valid."""

    @property
    def insecure(self) -> bool:
        return self.insecure_seed is not None


def _get(data: Mapping, key: str, where: str, expected: str, accept) -> object:
    value = data.get(key)
    if not accept(value):
        raise ObfuscationError(f"{where}: {key} = {value!r:.60}; expected {expected}")
    return value


def _number(data: Mapping, key: str, where: str) -> float:
    value = _get(data, key, where, "a number",
                 lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v == v)
    return float(value)  # type: ignore[arg-type]


def _string(data: Mapping, key: str, where: str, pattern: re.Pattern, expected: str) -> str:
    return str(_get(data, key, where, expected, lambda v: isinstance(v, str) and bool(pattern.fullmatch(v))))


def _object(data: Mapping, key: str, where: str) -> Mapping:
    value = _get(data, key, where, "a JSON object", lambda v: isinstance(v, Mapping))
    assert isinstance(value, Mapping)
    return value


def decode_release_manifest(raw: bytes, where: str) -> dict:
    """The JSON object in the bytes of a release manifest (size-limited; one-line errors naming ``where``).

    The one decoder of a release manifest's bytes: the file beside a release, and ``release.json`` in a
    proof bundle, are read through it."""
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise ObfuscationError(f"{where}: {len(raw)} bytes, too large for a release manifest")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ObfuscationError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ObfuscationError(f"{where}: expected a JSON object")
    return data


def load_release_manifest(path: str | os.PathLike) -> dict:
    """The JSON object of a release manifest file (size-limited; one-line errors naming the file)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ObfuscationError(f"{path}: release manifest not found") from None
    return decode_release_manifest(raw, str(path))


def read_release_manifest(source: str | os.PathLike | Mapping, *, verification_key: VerificationKey | None = None,
                          where: str | None = None) -> ReleaseInfo:
    """The release manifest at ``source`` (a path or its decoded JSON), validated field by field.

    With ``verification_key``: the manifest must name that key's id and carry a valid MAC under it
    (else :class:`~pudlab.errors.ObfuscationError`: "not authenticated"); the result says
    ``authenticated=True``. Without it, nothing is authenticated (``authenticated=False``).
    """
    if isinstance(source, Mapping):
        data, name = dict(source), where or "release manifest"
    else:
        data, name = load_release_manifest(source), where or str(source)
    if data.get("kind") != "pudlab.release" or data.get("format") != 1:
        raise ObfuscationError(f"{name}: not a release manifest (expected kind 'pudlab.release', format 1)")
    obfuscation, hashes = _object(data, "obfuscation", name), _object(data, "arrays_sha256", name)
    where = f"{name}: obfuscation"
    sigma, fraction = _number(obfuscation, "sigma", where), _number(obfuscation, "fraction", where)
    if not (sigma >= 0 and 0 <= fraction <= 1):
        raise ObfuscationError(f"{where}: sigma {sigma:g}, fraction {fraction:g}; expected sigma >= 0, fraction in [0, 1]")
    clip = bool(_get(obfuscation, "clip", where, "true or false", lambda v: isinstance(v, bool)))
    key_id = _string(obfuscation, "key_id", where, _KEY_ID_RE, "16 lowercase hex digits")
    num_samples = int(_get(data, "num_samples", name, "an integer >= 0",  # type: ignore[call-overload]
                           lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0))
    x_sha, y_sha = (_string(hashes, key, f"{name}: arrays_sha256", _SHA_RE, "a SHA-256") for key in ("x", "y"))
    ids_sha = hashes.get("ids") if isinstance(hashes.get("ids"), str) else None
    insecure = obfuscation.get("insecure_seed")
    authenticated = False
    if verification_key is not None:
        _check_mac(data, verification_key, key_id, name)
        authenticated = True
    return ReleaseInfo(sigma, fraction, clip, key_id, num_samples, x_sha, y_sha, ids_sha,
                       insecure if isinstance(insecure, int) and not isinstance(insecure, bool) else None, authenticated)


def _check_mac(data: Mapping, key: VerificationKey, key_id: str, name: str) -> None:
    auth = data.get("authentication")
    if not isinstance(auth, Mapping) or auth.get("scheme") != MAC_SCHEME or not isinstance(auth.get("mac"), str):
        raise ObfuscationError(f"{name}: not authenticated: no '{MAC_SCHEME}' authentication record")
    if key_id != key.key_id:
        raise ObfuscationError(f"{name}: not authenticated: released under key {key_id}, the verification key "
                               f"is for key {key.key_id}")
    if auth.get("key_id") != key.key_id:
        raise ObfuscationError(f"{name}: not authenticated: its authentication names key {auth.get('key_id')!r:.20}, "
                               f"not {key.key_id}")
    if not hmac.compare_digest(release_mac(key.secret, dict(data)), str(auth["mac"])):
        raise ObfuscationError(f"{name}: not authenticated: the MAC does not match (the manifest was changed, or "
                               f"made without key {key.key_id})")


def verification_key_exposure(path: str | os.PathLike) -> str | None:
    """A warning when a verification key file is readable by other users (they could forge manifests)."""
    return key_file_exposure(path)


__all__ = [
    "VERIFICATION_KEY_HEADER",
    "ReleaseInfo",
    "VerificationKey",
    "decode_release_manifest",
    "load_release_manifest",
    "read_release_manifest",
    "verification_key_exposure",
]
