"""The notation the report uses, one line per symbol (the long form is ``docs/notation.md``), and the
line under the claims table that says how sure each number is."""

from __future__ import annotations

from pudlab.experiments.stats import ALPHA

CONFIDENCE = 1 - 2 * ALPHA
"""Two-sided level of the [a, b] intervals printed after each effect."""

GLOSSARY: list[tuple[str, str]] = [
    ("T_t, T_e", "the training and evaluation sets: a seeded 90 % / 10 % split of the dataset's training images"),
    ("S-X-Y-Z", "a sampling setting: X = share of the labels covered, Y = share of them shared with the reference "
                "dataset, Z = share of each covered label's images drawn"),
    ("T_r, T_k,j", "a reference dataset; the j-th dataset of experiment k"),
    ("sigma", "obfuscation noise: every pixel (in [0, 1]) gets Gaussian noise of standard deviation sigma"),
    ("R", "the fraction of samples that are obfuscated (1 everywhere in the paper)"),
    ("O(T)", "the obfuscated dataset O(T; sigma, R)"),
    ("W_r, W_o", "weights of a model trained on a raw (clean) dataset / on an obfuscated one; all trainings of a "
                 "dataset start from one shared initial weight set"),
    ("W_r,3,1, Wr31", "a model of one experiment, named as in the paper: W_r,3,1 is the reference (clean) model of "
                      "Exp-3's first pair, W_o,3,2 the obfuscated model of its second; Wr31 is the same name in "
                      "series names such as floor[Wr31]"),
    ("A(W)", "top-1 accuracy of the model W on T_e; A(W_1,2): of the model trained on T_1,2"),
    ("D(W_a, W_b)", "model distance: Frobenius norm of the difference of all trainable parameters (Eq. 3)"),
    ("D_k,j", "the j-th distance series of experiment k, e.g. D_3,1 = D(W_r,3,1, W_o,3,1) against sigma"),
    ("noise floor", "D between two clean trainings on the same data that differ only in batch order: a distance "
                    "at or below it says nothing about the data; floor[Wr31] is the noise floor of W_r,3,1"),
    ("Delta", "distinguishability (Eq. 4): |D(W_Ti, W_Ti') - D(W_Ti, W_Tj')|, the same dataset vs another one"),
    ("[a, b]", f"after an effect in the claims table: its two-sided {CONFIDENCE * 100:g} % confidence interval, from "
               "the effect computed within each repeat (paired: one t over the repeats); a claim is reproduced when "
               "its effects clear the margin at that level, the margin's own uncertainty included"),
    ("verdict 'not testable here'", "this run cannot test the claim (models near chance, a degenerate noise "
                          "floor, too few epochs or repeats); the warning line above the claims names the cause"),
    ("margin", "the smallest effect a claim counts, printed with the claim: for distances a multiple of the noise "
               "floor's standard deviation, for accuracies a fixed accuracy difference"),
    ("sigma*", "the smallest sigma from which on the gap between two distance series stays within ± margin (no "
               "longer distinguishable from the noise floor); 'sigma* > grid': still distinguishable at the largest "
               "sigma"),
    ("rho", "Spearman's rank correlation of a distance series with sigma over every repeat (1: rises "
            "monotonically)"),
    ("P / U / D", "PUD triangle: Privacy, Utility, Distinguishability, each scaled to [0, 1]"),
    ("n, ±", "number of repeats (seeds) behind a value; mean ± one standard deviation over them (± 0: the "
             "repeats agree exactly)"),
    ("batch_size 0", "in a preset: the paper's batch size, 128 for one-channel images and 64 for colour"),
]

CLAIMS_NOTE = (f"How sure: each [a, b] after an effect is its {CONFIDENCE * 100:g} % confidence interval over the repeats; "
               "margin is the smallest effect that counts, sigma* where a gap stops being measurable, rho the rank "
               "correlation with sigma (all in the notation below; the tests: docs/claims.md).")
"""The line under the claims table: what its intervals and symbols are."""

SETTING_NOTES: dict[tuple[str, object], str] = {
    ("batch_size", 0): "0 (the paper's: 128 for one-channel images, 64 for colour)",
    ("max_train_size", 0): "0 (no cut: the whole T_t)",
}
"""How the configuration table shows a preset setting whose value stands for a default."""

__all__ = ["CLAIMS_NOTE", "GLOSSARY", "SETTING_NOTES"]
