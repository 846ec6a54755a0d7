"""The notation the report uses, one line per symbol (the long form is ``docs/notation.md``)."""

from __future__ import annotations

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
    ("A(W)", "top-1 accuracy of the model W on T_e"),
    ("D(W_a, W_b)", "model distance: Frobenius norm of the difference of all trainable parameters (Eq. 3)"),
    ("D_k,j", "the j-th distance series of experiment k, e.g. D_3,1 = D(W_r,3,1, W_o,3,1) against sigma"),
    ("noise floor", "D between two clean trainings on the same data that differ only in batch order: a distance "
                    "at or below it says nothing about the data"),
    ("Delta", "distinguishability (Eq. 4): |D(W_Ti, W_Ti') - D(W_Ti, W_Tj')|, the same dataset vs another one"),
    ("P / U / D", "PUD triangle: Privacy, Utility, Distinguishability, each scaled to [0, 1]"),
    ("n, ±", "number of repeats (seeds) behind a value; mean ± one standard deviation over them"),
]

__all__ = ["GLOSSARY"]
