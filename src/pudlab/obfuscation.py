"""Dataset obfuscation O(T; sigma, R) (Eq. 2): t'_ij = t_ij + delta, delta ~ N(0, sigma^2) i.i.d.

Two ways to draw the noise, for two purposes:

* :func:`release` makes what leaves the data owner. The noise of a sample is drawn from a stream
  seeded by HMAC-SHA256(key, "noise|sigma|id") under a secret 256-bit :class:`ReleaseKey` (fresh
  from the OS CSPRNG by default). The same key, sigma and sample id give the same noise, so a
  re-release at the same sigma reproduces the earlier one exactly (averaging copies gains nothing);
  a release at another sigma is an **independent** draw (no shared noise direction to difference
  out). Which samples get noise (fraction R < 1) is keyed by (key, id) only, not by sigma: the same
  samples are noised at every sigma, so releases at several sigmas never expose a sample once clean
  and once noised. :func:`release_manifest` records what a recipient may know, never the key.
* :func:`obfuscate` is the experiment engine's internal noise, keyed by a small integer ``seed``:
  sample ``i`` gets ``sigma * z_i`` with ``z_i`` from the public stream ``(seed, "noise", id_i)``,
  one direction per sample for every sigma (common random numbers, so curves vs sigma are smooth).
  Anyone who knows the seed regenerates the noise, and two outputs at different sigmas give the raw
  data back exactly (``(s2 r1 - s1 r2) / (s2 - s1)``). It is for models pudlab trains itself; its
  output must not leave the store. Its selection uses the score ``(seed, "select", id)``.

Both refuse a sigma whose output would not be finite in float32.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import stat
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pudlab.data.dataset import LabeledImages, fingerprint_arrays
from pudlab.errors import ObfuscationError
from pudlab.seeding import derive_rng

KEY_FILE_HEADER = "pudlab-release-key-v1"
"""First word of a key file: ``pudlab-release-key-v1 <64 hex digits>`` on the first line."""
KEY_USE_PREFIX = "released-at-sigma"
"""Later key-file lines ``released-at-sigma <float>``: sigmas the key has released at (not secret)."""
KEY_BYTES = 32
_KEY_ID_LABEL = b"pudlab release key id v1"
_VERIFICATION_LABEL = b"pudlab release verification key v1"
MAC_SCHEME = "hmac-sha256/pudlab-release-v1"
"""The ``authentication.scheme`` of a release manifest (see :func:`release_mac`)."""
AUTHENTICATED_FIELDS = ("kind", "format", "obfuscation", "noise_model", "selection", "in_the_clear",
                        "sampling_recipe", "num_samples", "num_obfuscated", "arrays_sha256")
"""The release manifest's fields its MAC covers (fields added later, such as ``file``, are informational)."""
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ObfuscationParams:
    """Parameters of O(T)."""

    sigma: float
    """Noise standard deviation, in units of the [0, 1] pixel scale."""
    fraction: float = 1.0
    """R: fraction of the samples obfuscated (the paper uses 1)."""
    seed: int = 0
    """Noise key of the engine's internal noise: the same seed gives the same noise per sample id."""
    clip: bool = False
    """Clip the result to [0, 1] (the paper does not)."""

    def __post_init__(self) -> None:
        check_sigma_fraction(self.sigma, self.fraction)
        if self.seed < 0:
            raise ObfuscationError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_sigma_fraction(sigma: float, fraction: float) -> None:
    """Refuse a sigma that is negative, not finite, or beyond float32; a fraction outside [0, 1]."""
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ObfuscationError(f"sigma must be a finite number >= 0, got {sigma}")
    if sigma > _FLOAT32_MAX:
        raise ObfuscationError(f"sigma {sigma:g} is not finite in float32 (max {_FLOAT32_MAX:.3g})")
    if not 0.0 <= fraction <= 1.0:
        raise ObfuscationError(f"fraction R must be in [0, 1], got {fraction}")


def _require_finite(noised: np.ndarray, sigma: float) -> None:
    if not np.isfinite(noised).all():
        raise ObfuscationError(f"sigma {sigma:g} is too large: the obfuscated pixels overflow float32 "
                               "(not finite); use a smaller sigma")


def _add_noise(images: np.ndarray, positions: np.ndarray, sigma: float, unit_noise: np.ndarray) -> np.ndarray:
    images = images.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        images[positions] += np.float32(sigma) * unit_noise
    _require_finite(images[positions], sigma)
    return images


# ------------------------------------------------------------------------- the engine's internal noise
def sample_noise(sample_id: int, shape: tuple[int, ...], *, seed: int) -> np.ndarray:
    """The unit-variance noise vector z of one sample (float32), keyed by ``(seed, id)``."""
    return derive_rng(seed, "noise", int(sample_id)).standard_normal(shape, dtype=np.float32)


def selected_mask(ids: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Boolean mask of the ``round(fraction * N)`` samples that get noise (keyed by id)."""
    count = int(round(fraction * len(ids)))
    if count == len(ids):
        return np.ones(len(ids), dtype=bool)
    scores = np.array([derive_rng(seed, "select", int(i)).random() for i in ids])
    mask = np.zeros(len(ids), dtype=bool)
    mask[np.argsort(scores, kind="stable")[:count]] = True
    return mask


def noise_for(ids: np.ndarray, sample_shape: tuple[int, ...], *, seed: int) -> np.ndarray:
    """Unit noise for every id, stacked: (N, *sample_shape) float32."""
    noise = np.empty((len(ids), *sample_shape), dtype=np.float32)
    for row, sample_id in enumerate(ids):
        noise[row] = sample_noise(int(sample_id), sample_shape, seed=seed)
    return noise


def obfuscate(data: LabeledImages, *, sigma: float, fraction: float = 1.0, seed: int = 0,
              clip: bool = False) -> LabeledImages:
    """O(T) with the engine's internal noise (one direction per sample, scaled by sigma).

    Not for data that leaves the store: the public integer ``seed`` regenerates the noise (use
    :func:`release`). ``sigma = 0`` returns the images unchanged (clipping still applies when asked).

    >>> import numpy as np
    >>> from pudlab.data import LabeledImages
    >>> t = LabeledImages(np.zeros((2, 1, 2, 2), np.float32), np.arange(2), np.arange(2))
    >>> bool((obfuscate(t, sigma=0.0).images == 0).all())
    True
    """
    params = ObfuscationParams(sigma, fraction, seed, clip)
    images = data.images
    if params.sigma > 0 and params.fraction > 0:
        mask = selected_mask(data.ids, params.fraction, seed=params.seed)
        positions = np.flatnonzero(mask)
        noise = noise_for(data.ids[positions], data.sample_shape, seed=params.seed)
        images = _add_noise(images, positions, params.sigma, noise)
    if params.clip:
        images = np.clip(images, 0.0, 1.0)
    return data.with_images(images)


def obfuscation_manifest(
    source: LabeledImages,
    result: LabeledImages,
    params: ObfuscationParams,
    *,
    source_fingerprint: str,
    recipe: dict | None = None,
) -> dict:
    """Provenance of an internal :func:`obfuscate` output (records the seed: never ship it with the data)."""
    return {
        "kind": "pudlab.obfuscated_dataset",
        "source_fingerprint": source_fingerprint,
        "sample_fingerprint": source.fingerprint(),
        "sampling_recipe": recipe,
        "obfuscation": params.to_dict(),
        "noise_model": "internal: sigma * N(0,1) from the public stream (seed, 'noise', sample id)",
        "num_samples": len(result),
        "arrays_sha256": {
            "x": fingerprint_arrays(result.images),
            "y": fingerprint_arrays(result.labels),
            "ids": fingerprint_arrays(result.ids),
        },
    }


# ------------------------------------------------------------------------------------ release keys
@dataclass(frozen=True)
class ReleaseKey:
    """The secret of a release: 32 random bytes. Never printed: ``repr`` shows :attr:`key_id` only.

    Key file (text, mode 0600): first line ``pudlab-release-key-v1 <64 lowercase hex digits>``,
    then zero or more lines ``released-at-sigma <float>`` that ``pudlab obfuscate`` appends (the
    sigmas released under the key; not secret).
    """

    secret: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_BYTES:
            raise ObfuscationError(f"a release key is {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"ReleaseKey(key_id={self.key_id!r})"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> ReleaseKey:
        """A fresh key: 32 bytes from the operating system's CSPRNG (``secrets.token_bytes``)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_insecure_seed(cls, seed: int) -> ReleaseKey:
        """A key anyone can recompute from a small integer: reproducible demos only, no privacy."""
        if seed < 0:
            raise ObfuscationError(f"insecure seed must be >= 0, got {seed}")
        return cls(hashlib.sha256(f"pudlab insecure demo key|{int(seed)}".encode()).digest())

    @property
    def key_id(self) -> str:
        """First 16 hex digits of HMAC-SHA256(key, a fixed label): names the key, reveals nothing of it."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def digest(self, message: str) -> bytes:
        """HMAC-SHA256 of ``message`` under the key."""
        return hmac.new(self.secret, message.encode(), hashlib.sha256).digest()

    def verification_secret(self) -> bytes:
        """The owner's verification key: HMAC-SHA256(key, a fixed label). It authenticates release
        manifests (:func:`release_mac`) and, HMAC being a pseudo-random function, reveals nothing of
        the key, so a verifier who holds it cannot regenerate the noise."""
        return hmac.new(self.secret, _VERIFICATION_LABEL, hashlib.sha256).digest()

    @classmethod
    def read(cls, path: str | os.PathLike) -> ReleaseKey:
        """Read a key file (see the class docstring); a clear error naming the file otherwise. Warns
        (:class:`KeyFileWarning`) when the file is readable by other users."""
        key = cls(_parse_key_file(path)[0])
        exposure = key_file_exposure(path)
        if exposure:
            warnings.warn(exposure, KeyFileWarning, stacklevel=2)
        return key

    def write(self, path: str | os.PathLike) -> None:
        """Write a new key file, mode 0600, atomically; refuses to overwrite an existing file."""
        target = Path(path)
        if target.exists():
            raise ObfuscationError(f"{target}: already exists; a release key file is never overwritten")
        _write_private(target, self._file_text(()), replace=False)

    def _file_text(self, sigmas: tuple[float, ...]) -> str:
        lines = [f"{KEY_FILE_HEADER} {self.secret.hex()}"] + [f"{KEY_USE_PREFIX} {s!r}" for s in sigmas]
        return "\n".join(lines) + "\n"


class KeyFileWarning(UserWarning):
    """A secret key file other users can read."""


def key_file_exposure(path: str | os.PathLike) -> str | None:
    """A one-line warning when the key file at ``path`` is readable or writable by its group or others
    (mode & 0o077), else None."""
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        return (f"{path}: secret key file has mode {mode:04o}: other users can read it (or replace it); "
                f"chmod 600 {path}")
    return None


_KEY_LINE = re.compile(rf"{KEY_FILE_HEADER} ([0-9a-f]{{{2 * KEY_BYTES}}})")


def _parse_key_file(path: str | os.PathLike) -> tuple[bytes, tuple[float, ...]]:
    path = Path(path)
    expected = f"expected a first line '{KEY_FILE_HEADER} <{2 * KEY_BYTES} lowercase hex digits>'"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ObfuscationError(f"{path}: release key file not found") from None
    except IsADirectoryError:
        raise ObfuscationError(f"{path}: is a directory, not a release key file") from None
    if len(raw) > 1 << 20:
        raise ObfuscationError(f"{path}: too large for a release key file ({expected})")
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ObfuscationError(f"{path}: not a release key file ({expected})") from None
    match = _KEY_LINE.fullmatch(lines[0].strip()) if lines else None
    if match is None:  # never echo the content: it may be a key in another format
        raise ObfuscationError(f"{path}: not a release key file ({expected})")
    sigmas: list[float] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words:
            continue
        if len(words) != 2 or words[0] != KEY_USE_PREFIX:
            raise ObfuscationError(f"{path}: line {number}: expected '{KEY_USE_PREFIX} <sigma>'")
        try:
            sigmas.append(float(words[1]))
        except ValueError:
            raise ObfuscationError(f"{path}: line {number}: sigma {words[1]!r} is not a number") from None
    return bytes.fromhex(match.group(1)), tuple(sigmas)


def _write_private(target: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` to ``target`` via a 0600 temporary file in the same folder (fsync, then link/rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    temp = Path(temp_name)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="ascii") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if replace:
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)  # atomic, and fails if the target exists
        except FileExistsError:
            raise ObfuscationError(f"{target}: already exists; a release key file is never overwritten") from None
        except OSError:  # a file system without hard links: check, then rename (a small race window)
            if target.exists():
                raise ObfuscationError(f"{target}: already exists; a release key file is never overwritten") from None
            os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()


def key_file_sigmas(path: str | os.PathLike) -> tuple[float, ...]:
    """The sigmas recorded in a key file (``released-at-sigma`` lines), in order."""
    return _parse_key_file(path)[1]


def record_key_use(path: str | os.PathLike, sigmas: tuple[float, ...] | list[float]) -> None:
    """Append the sigmas not yet recorded to a key file (atomic rewrite, mode 0600; key unchanged)."""
    secret, known = _parse_key_file(path)
    new = [float(s) for s in sigmas if float(s) > 0 and float(s) not in known]
    new = list(dict.fromkeys(new))
    if new:
        _write_private(Path(path), ReleaseKey(secret)._file_text((*known, *new)), replace=True)


# ---------------------------------------------------------------------------------------- releases
def release_selected_mask(ids: np.ndarray, fraction: float, *, key: ReleaseKey) -> np.ndarray:
    """The ``round(fraction * N)`` samples with the lowest keyed score HMAC(key, "select|id"); sigma plays no part."""
    count = int(round(fraction * len(ids)))
    if count == len(ids):
        return np.ones(len(ids), dtype=bool)
    scores = np.array([int.from_bytes(key.digest(f"select|{int(i)}")[:8], "little") for i in ids], dtype=np.uint64)
    mask = np.zeros(len(ids), dtype=bool)
    mask[np.argsort(scores, kind="stable")[:count]] = True
    return mask


def release_unit_noise(ids: np.ndarray, sample_shape: tuple[int, ...], *, key: ReleaseKey,
                       sigma: float) -> np.ndarray:
    """Unit noise of each id at ``sigma``: PCG64 seeded by HMAC-SHA256(key, "noise|sigma|id"), float32."""
    noise = np.empty((len(ids), *sample_shape), dtype=np.float32)
    label = repr(float(sigma))
    for row, sample_id in enumerate(ids):
        digest = key.digest(f"noise|{label}|{int(sample_id)}")
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(digest, "little"))))
        noise[row] = rng.standard_normal(sample_shape, dtype=np.float32)
    return noise


def release(data: LabeledImages, *, sigma: float, key: ReleaseKey, fraction: float = 1.0,
            clip: bool = False) -> LabeledImages:
    """O(T; sigma, R) for release: keyed noise from (key, sigma, sample id); labels and ids unchanged.

    ``sigma = 0`` returns the images unchanged (clipping still applies when asked).
    """
    check_sigma_fraction(sigma, fraction)
    if not isinstance(key, ReleaseKey):
        raise ObfuscationError(f"key must be a ReleaseKey, got {type(key).__name__}")
    if len(np.unique(data.ids)) != len(data.ids):
        raise ObfuscationError("sample ids must be unique: a repeated id would get the same noise twice")
    images = data.images
    if sigma > 0 and fraction > 0:
        positions = np.flatnonzero(release_selected_mask(data.ids, fraction, key=key))
        noise = release_unit_noise(data.ids[positions], data.sample_shape, key=key, sigma=sigma)
        images = _add_noise(images, positions, sigma, noise)
    if clip:
        images = np.clip(images, 0.0, 1.0)
    return data.with_images(images)


RELEASE_NOISE_MODEL = (
    "Gaussian: each selected sample gets sigma * z, z ~ N(0, I) over its pixels, from a stream seeded by "
    "HMAC-SHA256 under a secret 256-bit key of (sigma, sample id); the key is not part of the release. "
    "The same key and sigma reproduce a release exactly; a release at another sigma is an independent draw."
)
RELEASE_SELECTION = ("round(R * N) samples with the lowest keyed score HMAC-SHA256(key, sample id): "
                     "the same samples at every sigma")


def canonical_json(data: object) -> bytes:
    """The bytes a MAC covers: key-sorted, compact, ASCII JSON (no NaN)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def release_mac(verification_secret: bytes, manifest: dict) -> str:
    """HMAC-SHA256 (hex) under the owner's verification key of the manifest's
    :data:`AUTHENTICATED_FIELDS` (a missing one counts as null)."""
    covered = {name: manifest.get(name) for name in AUTHENTICATED_FIELDS}
    return hmac.new(verification_secret, canonical_json(covered), hashlib.sha256).hexdigest()


def release_manifest(result: LabeledImages, *, sigma: float, fraction: float, clip: bool, key: ReleaseKey,
                     recipe: dict | None = None, insecure_seed: int | None = None) -> dict:
    """What travels with a release: only what a recipient may know (never the key or a noise seed).

    No hash of the raw data either (it would confirm a guess of T). ``insecure_seed``: the key came
    from :meth:`ReleaseKey.from_insecure_seed` and the manifest says so (and gives the seed: it is
    guessable anyway). ``authentication`` is the owner's MAC (:func:`release_mac`) of the fields that
    say what the release is: sigma, R, clip, key id and the arrays' hashes; whoever holds the owner's
    verification key checks it (:func:`pudlab.release_auth.read_release_manifest`).
    """
    mask = release_selected_mask(result.ids, fraction, key=key) if sigma > 0 else np.zeros(len(result), bool)
    key_info: dict[str, str | int] = {"key_id": key.key_id, "key": "secret, 256-bit, not in the release"}
    if insecure_seed is not None:
        key_info = {"key_id": key.key_id, "key": "INSECURE: derived from a public integer seed; anyone can "
                    "regenerate the noise and remove it", "insecure_seed": int(insecure_seed)}
    manifest = {
        "kind": "pudlab.release",
        "format": 1,
        "obfuscation": {"sigma": float(sigma), "fraction": float(fraction), "clip": bool(clip), **key_info},
        "noise_model": RELEASE_NOISE_MODEL,
        "selection": RELEASE_SELECTION,
        "in_the_clear": "labels and sample ids (positions in the source dataset) are not obfuscated",
        "sampling_recipe": recipe,
        "num_samples": len(result),
        "num_obfuscated": int(mask.sum()),
        "arrays_sha256": {
            "x": fingerprint_arrays(result.images),
            "y": fingerprint_arrays(result.labels),
            "ids": fingerprint_arrays(result.ids),
        },
    }
    manifest["authentication"] = {"scheme": MAC_SCHEME, "key_id": key.key_id,
                                  "mac": release_mac(key.verification_secret(), manifest)}
    return manifest


__all__ = [
    "AUTHENTICATED_FIELDS",
    "KEY_FILE_HEADER",
    "MAC_SCHEME",
    "KeyFileWarning",
    "ObfuscationParams",
    "ReleaseKey",
    "canonical_json",
    "check_sigma_fraction",
    "key_file_exposure",
    "key_file_sigmas",
    "noise_for",
    "obfuscate",
    "obfuscation_manifest",
    "record_key_use",
    "release",
    "release_mac",
    "release_manifest",
    "release_selected_mask",
    "release_unit_noise",
    "sample_noise",
    "selected_mask",
]
