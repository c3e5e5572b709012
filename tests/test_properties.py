"""Property-based tests: eps parsing, stratified sampling, projection onto the threat model, mergeable counts."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from attacks.threat_model import project, violations
from audit.data.sampling import even_quotas, stratified_indices
from audit.options import parse_eps_list, parse_eps_value
from audit.errors import AuditError
from audit.engine.tallies import ClassCounts

FAST = settings(max_examples=60, deadline=None)

# --- eps parsing --------------------------------------------------------------------------------------------

fractions = st.builds(lambda n, d: (f"{n}/{d}", n / d), st.integers(1, 999), st.integers(1, 999))
decimals = st.floats(min_value=1e-6, max_value=10, allow_nan=False).map(lambda v: (repr(v), v))
budget = st.one_of(fractions, decimals)


@FAST
@given(budget)
def test_one_budget_reads_back_its_value(item):
    text, value = item
    assert parse_eps_value(text) == value
    assert parse_eps_value(f"  {text} ") == value


def respell(text: str, value: float) -> str:
    """Another spelling of the same budget: 3/4 -> 6/8, a decimal -> its exact ratio."""
    if "/" in text:
        num, den = text.split("/")
        return f"{2 * int(num)}/{2 * int(den)}"
    exact = Fraction(value)
    return f"{exact.numerator}/{exact.denominator}"


@FAST
@given(st.lists(budget, min_size=1, max_size=8), st.data())
def test_budget_lists_are_sorted_deduplicated_and_keep_the_first_spelling(items, data):
    again = data.draw(st.lists(st.sampled_from(items), max_size=4))
    items = items + [(respell(t, v), v) for t, v in again]  # the same budgets, spelled otherwise, later
    texts = [t for t, _ in items]
    parsed = parse_eps_list(", ".join(texts))
    values = [v for v, _ in parsed]
    assert values == sorted(set(values)) and set(values) == {float(v) for _, v in items}
    for value, text in parsed:
        first = next(t for t, v in items if v == value)
        assert text == first and parse_eps_value(text) == value
    # the same budgets split over several --eps options, or given back as the spellings kept
    cut = data.draw(st.integers(1, len(texts)))
    assert parse_eps_list([",".join(texts[:cut]), ",".join(texts[cut:]) or texts[0]]) == parsed
    assert parse_eps_list(",".join(t for _, t in parsed)) == parsed


@FAST
@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_fractions_are_exact_ratios(num, den):
    assert parse_eps_value(f"{num}/{den}") == float(Fraction(num, den))


@FAST
@given(st.integers(1, 999), st.integers(1, 999), st.integers(1, 999))
def test_a_budget_with_two_slashes_is_refused(a, b, c):
    with pytest.raises(AuditError, match="--eps value"):
        parse_eps_value(f"{a}/{b}/{c}")


# --- stratified sampling ------------------------------------------------------------------------------------


@FAST
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.randoms(use_true_random=False), st.data())
def test_stratified_samples_are_even_per_class_and_reproducible(capacities, shuffle, data):
    labels = np.array([c for c, k in enumerate(capacities) for _ in range(k)], dtype=np.int64)
    shuffle.shuffle(labels)
    n = data.draw(st.one_of(st.none(), st.integers(1, len(labels) + 3)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    chosen = stratified_indices(labels, n, seed)
    assert np.array_equal(chosen, stratified_indices(labels, n, seed))
    assert len(chosen) == (len(labels) if n is None else min(n, len(labels)))
    assert np.all(np.diff(chosen) > 0) and chosen.min() >= 0 and chosen.max() < len(labels)
    classes = np.unique(labels)
    capacity = np.array([np.sum(labels == c) for c in classes])
    taken = np.array([np.sum(labels[chosen] == c) for c in classes])
    assert np.all(taken <= capacity)
    open_classes = taken < capacity  # classes with images left over got an even share: within one of the most
    if open_classes.any():
        assert taken.max() - taken[open_classes].min() <= 1


@FAST
@given(st.lists(st.integers(0, 8), min_size=1, max_size=6), st.integers(0, 60))
def test_quotas_fill_n_within_capacity_and_stay_even_whichever_groups_draw_the_leftover(capacities, n):
    capacity = np.array(capacities, dtype=np.int64)
    for seed in range(12):  # the leftover units go to groups drawn at random: try several draws
        quota = even_quotas(capacity, n, np.random.default_rng(seed))
        assert quota.sum() == min(n, capacity.sum()) and np.all((quota >= 0) & (quota <= capacity))
        open_groups = quota < capacity
        if open_groups.any():
            assert quota.max() - quota[open_groups].min() <= 1


# --- projection onto the threat model -----------------------------------------------------------------------

SHAPE = (3, 1, 3, 3)
images = arrays(np.float32, SHAPE, elements=st.floats(0, 1, width=32))
anywhere = arrays(np.float32, SHAPE, elements=st.floats(-2, 3, width=32))
norms = st.sampled_from(["Linf", "L2"])
radii = st.floats(1e-3, 2.0)


def size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


@FAST
@given(images, anywhere, radii, norms)
def test_projection_lands_in_the_ball_and_box_and_is_idempotent(x, x_adv, eps, norm):
    x, x_adv = torch.from_numpy(x), torch.from_numpy(x_adv)
    p = project(x, x_adv, eps, norm)
    assert p.min() >= 0 and p.max() <= 1
    assert size(p - x, norm).max() <= eps * (1 + 1e-5) + 1e-6
    assert max(violations(x, p, eps, norm)) <= 1e-5
    assert torch.allclose(project(x, p, eps, norm), p, atol=1e-6)
    assert torch.equal(project(x, x_adv, None, norm), x_adv.clamp(0, 1))  # unbounded: only the box


@FAST
@given(images, images, radii, norms)
def test_projection_leaves_a_valid_point_where_it_is(x, y, eps, norm):
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    delta = y - x  # toward another point of the box, shortened into the ball: a valid adversarial
    scale = (eps / size(delta, norm).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1) * 0.999
    valid = x + scale * delta
    assert violations(x, valid, eps, norm) == (0.0, 0.0)
    assert torch.allclose(project(x, valid, eps, norm), valid, atol=1e-6)


# --- mergeable counts ---------------------------------------------------------------------------------------


@FAST
@given(st.integers(1, 6).flatmap(lambda k: st.tuples(
    st.just(k), arrays(np.int64, st.integers(0, 50), elements=st.integers(0, k - 1)))), st.data())
def test_class_counts_of_parts_merge_into_the_whole(case, data):
    k, labels = case
    hits = data.draw(arrays(np.bool_, len(labels)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(labels)), max_size=4)))
    whole = ClassCounts(k)
    whole.add(labels, hits, 0)
    merged = ClassCounts(k)
    spans = [(lo, hi) for lo, hi in zip([0, *cuts], [*cuts, len(labels)], strict=True) if hi > lo]
    for lo, hi in data.draw(st.permutations(spans)):  # the parts in any order, as ranks or resumed runs add them
        part = ClassCounts(k)
        part.add(labels[lo:hi], hits[lo:hi], lo)
        merged.merge(part)
    # each sample's hit comes out in data order
    assert merged.samples.ordered(bool).tolist() == hits.tolist()
    assert (merged.per_sample() is None) == (len(labels) == 0) or merged.per_sample() == whole.per_sample()
    # a literal count, class by class
    assert merged.total.tolist() == whole.total.tolist() == [int(np.sum(labels == c)) for c in range(k)]
    assert merged.hits.tolist() == whole.hits.tolist() == [int(np.sum(hits[labels == c])) for c in range(k)]
    assert merged.n == len(labels) and merged.accuracy == whole.accuracy
