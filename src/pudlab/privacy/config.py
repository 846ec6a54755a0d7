"""What ``pudlab privacy`` and ``pudlab audit`` measure and how much of it: :class:`PrivacyConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pudlab.errors import PudlabError
from pudlab.privacy.denoising import DenoiseGrid
from pudlab.privacy.learned import LearnedDenoiserConfig
from pudlab.records import Record


@dataclass(frozen=True)
class PrivacyConfig(Record):
    """What ``pudlab privacy`` measures and how much of it (defaults fit ~1 min on 2 CPU cores)."""

    queries: int = 500
    """Released samples attacked: a seeded subsample of T_t (stream (seed, "privacy-queries"))."""
    pool_size: int = 5000
    """Candidate pool of the linkage attacker: the queries' sources plus seeded other raw samples of
    the source's training set, this many in all (capped by its size)."""
    denoise_samples: int = 200
    """Queries the denoising attack runs on (the first of the seeded query order)."""
    disclosures: int = 10
    """N of the privacy-decline attack: n = 1..N disclosures."""
    denoise: DenoiseGrid = field(default_factory=DenoiseGrid)
    """Parameter grid of the denoising attack."""
    membership: bool = True
    """Run the membership-inference attack (trains one small model per sigma)."""
    mia_members: int = 1000
    """Training samples of the attacked model (seeded subsample of T_t, stream (seed, "mia-members"))."""
    mia_nonmembers: int = 500
    """Non-members: a seeded subsample of T_e (capped by its size)."""
    mia_epochs: int = 20
    """Epochs of the attacked model (more epochs: more overfitting, a stronger attack)."""
    mia_lr: float = 1e-3
    """Adam learning rate of the attacked model, per step."""
    mia_batch_size: int = 128
    """Batch size of the attacked model."""
    mia_widths: tuple[int, int, int] = (8, 16, 32)
    """Conv widths of the attacked M_cnn."""
    mia_hidden: int = 32
    """Hidden dense units of the attacked M_cnn."""
    mia_fpr: float = 0.01
    """False-positive budget of the reported TPR."""
    delta: float = 1e-5
    """delta of the (epsilon, delta) accounting."""
    seed: int = 0
    """Root seed of every subsample, partition and model init of the attacks."""
    noise_seed: int = 0
    """Obfuscation noise key of the release (pudlab's keyed noise)."""
    split_seed: int = 0
    """Seed of the paper's 90/10 T_t / T_e split."""
    eval_fraction: float = 0.1
    """T_e share of the official training set."""
    clip: bool = False
    """Release clipped to [0, 1] (pudlab's default: not clipped)."""
    data_range: float = 1.0
    """Raw pixel range, used by PSNR, SSIM and the sensitivities."""
    learned: bool = True
    """Run the public-data attacks: the learned denoiser (and label inference, ``label_epochs`` > 0)."""
    learned_denoiser: LearnedDenoiserConfig = field(default_factory=LearnedDenoiserConfig)
    """Size and training of the attacker's learned denoiser."""
    label_epochs: int = 15
    """Epochs of the label-inference classifiers (0: no label inference)."""
    lira_shadows: int = 8
    """Shadow models of LiRA (even; 0: no LiRA). Needs ``membership``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mia_widths", tuple(int(v) for v in self.mia_widths))
        for name in ("queries", "pool_size", "denoise_samples", "disclosures", "mia_members", "mia_nonmembers",
                     "mia_epochs", "mia_batch_size", "mia_hidden"):
            if getattr(self, name) < 1:
                raise PudlabError(f"privacy config: {name} must be >= 1, got {getattr(self, name)}")
        if self.lira_shadows < 0 or self.lira_shadows % 2:
            raise PudlabError(f"privacy config: lira_shadows must be an even number >= 0, got {self.lira_shadows}")
        if self.label_epochs < 0:
            raise PudlabError(f"privacy config: label_epochs must be >= 0, got {self.label_epochs}")
        if not 0 < self.delta < 1:
            raise PudlabError(f"privacy config: delta must be in (0, 1), got {self.delta}")


__all__ = ["PrivacyConfig"]
