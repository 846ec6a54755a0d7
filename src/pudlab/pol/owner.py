"""Binding a bundle's shared data to its owner's release: sigma, R and clip come from the owner, never
from the prover.

The replay tolerance grows with the noise of O(T), so the noise parameters the verifier uses must not
be the prover's to choose. They come from one of:

* the owner's **release manifest** in the bundle (``release.json``), authenticated under the owner's
  verification key the verifier holds (:mod:`pudlab.release_auth`): its MAC must be valid, the shared
  arrays must be the release's (SHA-256), and the bundle's claimed sigma, R, clip and key id must be the
  release's;
* the **noise the verifier knows** out of band (an FL server assigned the client's sigma): the claim
  must equal it;
* neither: only a release shared in the clear (sigma 0 or R 0) passes -- its tolerance is exactly 0,
  there is nothing to inflate -- and the verdict says it is bound to no owner. A claimed sigma > 0
  fails the check: the prover would be choosing its own tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

from pudlab.errors import ObfuscationError
from pudlab.pol.bundle import ProofBundle
from pudlab.pol.manifest import NoiseClaim
from pudlab.pol.policy import Check
from pudlab.release_auth import ReleaseInfo, VerificationKey, read_release_manifest


@dataclass(frozen=True)
class Binding:
    """The outcome of the release check: the check, the noise the verifier will use, what it learnt."""

    check: Check
    noise: NoiseClaim
    release: dict | None


def _same_noise(a: NoiseClaim, b: NoiseClaim) -> bool:
    return (a.sigma, a.fraction, a.clip) == (b.sigma, b.fraction, b.clip)


def _describe(noise: NoiseClaim) -> str:
    return f"sigma {noise.sigma:g}, R {noise.fraction:g}, clip {str(noise.clip).lower()}"


def _owner_release(bundle: ProofBundle, key: VerificationKey) -> tuple[str | None, ReleaseInfo | None]:
    """(failure or None, the authenticated release)."""
    manifest = bundle.manifest
    if bundle.release is None:
        return ("the bundle carries no release manifest of its shared data (release.json): nothing binds O(T) to "
                f"the owner of key {key.key_id}"), None
    try:
        info = read_release_manifest(bundle.release, verification_key=key, where="release.json")
    except ObfuscationError as exc:
        return str(exc), None
    shared = manifest.shared
    if (info.x_sha256, info.y_sha256, info.num_samples) != (shared.x.sha256, shared.y.sha256, shared.num_samples):
        return (f"the shared data is not the owner's release (release.json: {info.num_samples} samples, x "
                f"{info.x_sha256[:12]}, y {info.y_sha256[:12]}; bundle: {shared.num_samples} samples, x "
                f"{shared.x.sha256[:12]}, y {shared.y.sha256[:12]})"), info
    claimed = manifest.noise
    released = NoiseClaim(info.sigma, info.fraction, info.clip, info.key_id)
    if not _same_noise(claimed, released) or claimed.key_id not in (None, info.key_id):
        return (f"the bundle claims {_describe(claimed)} (key {claimed.key_id}), the owner's release says "
                f"{_describe(released)} (key {info.key_id})"), info
    return None, info


def release_check(bundle: ProofBundle, owner_key: VerificationKey | None, known_noise: NoiseClaim | None) -> Binding:
    """The ``release`` check of a bundle (see the module docstring)."""
    claimed = bundle.manifest.noise
    noise, summary, notes = claimed, None, []
    if owner_key is not None:
        failure, info = _owner_release(bundle, owner_key)
        if info is not None:
            summary = {"key_id": info.key_id, "authenticated": failure is None, "insecure": info.insecure}
        if failure is not None:
            return Binding(Check("release", False, failure), claimed, summary)
        assert info is not None
        noise = NoiseClaim(info.sigma, info.fraction, info.clip, info.key_id)
        notes.append(f"O(T) is the authenticated release of key {info.key_id} ({_describe(noise)})")
        if info.insecure:
            notes.append(f"its key is INSECURE (derived from public seed {info.insecure_seed}): O(T) hides nothing")
    if known_noise is not None:
        if not _same_noise(claimed, known_noise):
            return Binding(Check("release", False, f"the bundle claims {_describe(claimed)}, the verifier knows "
                                                   f"{_describe(known_noise)}"), claimed, summary)
        noise = known_noise if owner_key is None else noise
        notes.append(f"{_describe(known_noise)} as the verifier knows it")
    if notes:
        return Binding(Check("release", True, "; ".join(notes)), noise, summary)
    if claimed.sigma == 0 or claimed.fraction == 0:
        return Binding(Check("release", True, "O(T) is shared in the clear (no noise: the replay is exact, nothing to "
                                              "inflate); NOT bound to an owner (no owner key given)"), claimed, None)
    return Binding(Check("release", False, f"sigma {claimed.sigma:g} is the prover's own claim: without the owner's "
                                           f"verification key or the sigma known to the verifier, the replay "
                                           f"tolerance would be the prover's to choose"), claimed, None)


__all__ = ["Binding", "release_check"]
