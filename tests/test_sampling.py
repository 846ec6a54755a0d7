import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pudlab.errors import SamplingError
from pudlab.sampling import (
    SampleRecipe,
    SamplingSetting,
    draw_recipe,
    draw_sample,
    label_window,
    parse_labels,
    subsample,
)

# Every setting of the paper's Tables 1-6 with its label window (reference 0-4 where a counterpart).
TABLE_SETTINGS = [
    ("S-1-1-0.5", None, tuple(range(10))),
    ("S-0.8-1-0.625", None, tuple(range(8))),
    ("S-0.5-1-1", None, (0, 1, 2, 3, 4)),
    ("S-0.8-1-1", None, tuple(range(8))),
    ("S-1-1-0.25", None, tuple(range(10))),
    ("S-0.5-1-0.5", None, (0, 1, 2, 3, 4)),
    ("S-0.5-0.4-0.5", (0, 1, 2, 3, 4), (3, 4, 5, 6, 7)),
    ("S-0.5-0.2-0.5", (0, 1, 2, 3, 4), (4, 5, 6, 7, 8)),
    ("S-0.5-1-0.5", (0, 1, 2, 3, 4), (0, 1, 2, 3, 4)),
    ("S-1-1-0.05", None, tuple(range(10))),
]

POOL_LABELS = np.repeat(np.arange(10), 100)  # 100 entries per label
np.random.default_rng(0).shuffle(POOL_LABELS)


@pytest.mark.parametrize("text,reference,window", TABLE_SETTINGS)
def test_table_windows_and_sizes(text, reference, window):
    setting = SamplingSetting.parse(text)
    assert label_window(setting, 10, reference_labels=reference) == window
    positions = draw_sample(POOL_LABELS, window, setting.sampling_ratio, seed=3)
    assert set(np.unique(POOL_LABELS[positions])) == set(window)
    expected = len(window) * math.floor(setting.sampling_ratio * 100 + 1e-9)
    assert len(positions) == expected
    # size is about X * Z * |T_t|
    assert math.isclose(len(positions), setting.label_degree * setting.sampling_ratio * len(POOL_LABELS), rel_tol=0.02)


def test_parse_and_str_round_trip():
    setting = SamplingSetting.parse("S-0.8-1-0.625")
    assert (setting.label_degree, setting.label_overlap, setting.sampling_ratio) == (0.8, 1.0, 0.625)
    assert SamplingSetting.parse(str(setting)) == setting


@pytest.mark.parametrize("bad", ["S-1-1", "X-1-1-1", "S-a-1-1", "S-0-1-1", "S-1-1.5-1", "S-1-1-0"])
def test_parse_rejects(bad):
    with pytest.raises(SamplingError):
        SamplingSetting.parse(bad)


def test_zero_overlap_continues_after_reference():
    assert label_window(SamplingSetting(0.5, 0.0, 1), 10, reference_labels=(0, 1, 2, 3, 4)) == (5, 6, 7, 8, 9)


def test_window_wraps_mod_c():
    assert label_window(SamplingSetting(0.5, 0.2, 1), 10, reference_labels=(5, 6, 7, 8, 9)) == (9, 0, 1, 2, 3)


@settings(max_examples=60, deadline=None)
@given(
    degree=st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.8, 1.0]),
    overlap=st.sampled_from([0.0, 0.2, 0.4, 0.5, 1.0]),
    ratio=st.sampled_from([0.05, 0.1, 0.25, 0.5]),
    seed=st.integers(0, 2**31),
)
def test_window_and_disjoint_properties(degree, overlap, ratio, seed):
    setting = SamplingSetting(degree, overlap, ratio)
    reference = label_window(SamplingSetting(degree, 1, ratio), 10)
    window = label_window(setting, 10, reference_labels=reference)
    assert len(window) == math.ceil(10 * degree - 1e-9)
    assert len(set(window)) == len(window)
    shared = len(set(window) & set(reference))
    requested = math.ceil(10 * degree * overlap - 1e-9)
    # two windows of k labels out of C = 10 share at least 2k - C of them
    assert shared == min(max(requested, 2 * len(window) - 10), len(window))
    first = draw_recipe(POOL_LABELS, SampleRecipe(setting, window, seed))
    second = draw_recipe(POOL_LABELS, SampleRecipe(setting, window, seed + 1, exclude_seeds=(seed,)))
    assert len(np.intersect1d(first, second)) == 0
    assert len(first) == len(second)
    assert set(POOL_LABELS[second]) == set(window)


def test_disjoint_draw_impossible_is_clear():
    with pytest.raises(SamplingError, match="left after excluding"):
        draw_recipe(POOL_LABELS, SampleRecipe(SamplingSetting(1, 1, 0.6), tuple(range(10)), 1, exclude_seeds=(0,)))


def test_draw_is_keyed_per_label():
    """The entries drawn for a label do not depend on which other labels are covered."""
    a = draw_sample(POOL_LABELS, (0, 1, 2), 0.3, seed=9)
    b = draw_sample(POOL_LABELS, (2, 5), 0.3, seed=9)
    assert np.array_equal(a[POOL_LABELS[a] == 2], b[POOL_LABELS[b] == 2])


@settings(max_examples=30, deadline=None)
@given(fraction=st.sampled_from([0.1, 0.5, 0.9, 1.0]), seed=st.integers(0, 1000))
def test_nested_subsets(fraction, seed):
    parent = draw_sample(POOL_LABELS, tuple(range(8)), 1.0, seed=seed)
    child = subsample(parent, fraction, seed=seed)
    assert len(child) == round(fraction * len(parent))
    assert set(child) <= set(parent)
    recipe = SampleRecipe(SamplingSetting(0.8, 1, 1), tuple(range(8)), seed, nested_fraction=fraction, nested_seed=seed)
    assert np.array_equal(draw_recipe(POOL_LABELS, recipe), child)


def test_recipe_round_trip():
    recipe = SampleRecipe(SamplingSetting(0.5, 0.4, 0.5), (3, 4, 5, 6, 7), 4, (1, 2), 0.5, 7)
    assert SampleRecipe.from_dict(recipe.to_dict()) == recipe


def test_own_draws_avoid_the_reference_and_do_not_nest():
    """Exp-4 / Exp-5: each set is its own draw; on shared labels it avoids the reference's entries."""
    reference = SampleRecipe(SamplingSetting(0.5, 1, 0.5), (0, 1, 2, 3, 4), 0)
    shifted = SampleRecipe(SamplingSetting(0.5, 0.4, 0.5), (3, 4, 5, 6, 7), 11, disjoint_from=(reference,))
    ref, other = set(draw_recipe(POOL_LABELS, reference)), set(draw_recipe(POOL_LABELS, shifted))
    assert not ref & other
    assert {int(POOL_LABELS[i]) for i in other} == {3, 4, 5, 6, 7}
    full = SampleRecipe(SamplingSetting(1, 1, 0.5), tuple(range(10)), 0)
    quarter = SampleRecipe(SamplingSetting(1, 1, 0.25), tuple(range(10)), 21, disjoint_from=(full,))
    twentieth = SampleRecipe(SamplingSetting(1, 1, 0.05), tuple(range(10)), 22, disjoint_from=(full,))
    a, b, c = (set(draw_recipe(POOL_LABELS, r)) for r in (full, quarter, twentieth))
    assert not a & b and not a & c
    assert not c <= b  # own seeds: the small draw is not a prefix of the larger one
    same_seed = SampleRecipe(SamplingSetting(1, 1, 0.05), tuple(range(10)), 21, disjoint_from=(full,))
    assert set(draw_recipe(POOL_LABELS, same_seed)) <= b  # what one shared seed would have given


def test_disjoint_from_round_trip_and_old_keys_unchanged():
    reference = SampleRecipe(SamplingSetting(1, 1, 0.5), tuple(range(10)), 0)
    recipe = SampleRecipe(SamplingSetting(1, 1, 0.25), tuple(range(10)), 5, disjoint_from=(reference,))
    assert SampleRecipe.from_dict(recipe.to_dict()) == recipe
    assert "disjoint_from" not in reference.to_dict()  # recipes without it hash as before


@pytest.mark.parametrize("text,expected", [("0,1,2", (0, 1, 2)), ("3-7", (3, 4, 5, 6, 7))])
def test_parse_labels(text, expected):
    assert parse_labels(text) == expected


@pytest.mark.parametrize("bad", ["", "1,1", "10", "a,b"])
def test_parse_labels_rejects(bad):
    with pytest.raises(SamplingError):
        parse_labels(bad)
