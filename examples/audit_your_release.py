"""Release your data with a kept key, then audit the release files against the raw data you keep.

    python examples/audit_your_release.py --out runs/audit                  # mnist-5k at sigma 0.1 and 0.5
    python examples/audit_your_release.py --out /tmp/a --dataset d.npz --tiny  # seconds, small attacks

The release is made as an owner makes it (`pudlab obfuscate`, a secret key kept in OUT/key.bin);
the audit reads the files as they are and never adds noise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pudlab
from pudlab.pud.scores import privacy_score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Folder for the key, the releases and the audit.")
    parser.add_argument("--dataset", default="mnist-5k", help="The raw dataset [mnist-5k].")
    parser.add_argument("--sigma", type=float, action="append", help="Noise std (repeatable) [0.1 and 0.5].")
    parser.add_argument("--tiny", action="store_true", help="Small attacks (for a quick check).")
    args = parser.parse_args(argv)
    sigmas = args.sigma or [0.1, 0.5]
    out = Path(args.out)

    # 1. The owner releases T_t at each sigma; the key stays in OUT/key.bin (never share it).
    subprocess.run([sys.executable, "-m", "pudlab.cli", "obfuscate", args.dataset,
                    "--sigma", ",".join(f"{s:g}" for s in sigmas), "--key-out", str(out / "key.bin"),
                    "--out", str(out / "release.npz")], check=True)
    files = sorted(out.glob("release*.npz"))

    # 2. The audit: every attack on the files as they are, against the raw data.
    config = pudlab.PrivacyConfig()
    if args.tiny:
        config = pudlab.PrivacyConfig(queries=40, pool_size=200, denoise_samples=8, mia_members=100,
                                      mia_nonmembers=40, mia_epochs=2, mia_widths=(4, 4, 4), lira_shadows=2,
                                      label_epochs=1, learned_denoiser=replace(config.learned_denoiser, steps=20))
    raw = pudlab.load_source(args.dataset)
    report = pudlab.audit_release(files, raw, config, train_model=True)
    for entry, checked in zip(report.entries, report.audit or [], strict=True):
        lira = f"{entry.lira.auc:.3f}" if entry.lira is not None else "-"
        print(f"{Path(checked.file).name}: sigma {entry.sigma:g} (measured noise {checked.measured_noise_std:.3f}), "
              f"linkage {entry.linkage.rate:.3f}, best denoised PSNR {entry.denoising.best.psnr:.2f} dB, "
              f"LiRA AUC {lira}")

    # 3. P for an outsourcing partner (threat model 'public': the release and public data of the same kind).
    profile = pudlab.load_profile("outsourcing")
    for sigma, inputs in pudlab.privacy_from_report(report).items():
        print(f"sigma {sigma:g}: P under threat model '{profile.threat_model}' = "
              f"{privacy_score(inputs, threat_model=profile.threat_model)[0]:.3f}")


if __name__ == "__main__":
    main()
