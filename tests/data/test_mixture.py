"""Mixture planning (data/mixture.py): shares, the largest mix without upsampling, max_epochs, selection."""

from __future__ import annotations

import pytest

from pretrain.data.mixture import plan_mixture, select


def _by_name(plans):
    return {p.name: p for p in plans}


def test_weights_become_shares_of_the_target():
    plans = _by_name(plan_mixture({"a": 3, "b": 1}, {"a": 10_000, "b": 10_000}, {"a": 4, "b": 4}, 8_000))
    assert plans["a"].share == pytest.approx(0.75) and plans["b"].share == pytest.approx(0.25)
    assert plans["a"].target_bytes == 6_000 and plans["b"].target_bytes == 2_000
    assert plans["a"].epochs == pytest.approx(0.6) and not plans["a"].capped


def test_without_a_target_the_largest_mix_needing_no_upsampling():
    plans = _by_name(plan_mixture({"a": 1, "b": 1}, {"a": 1_000, "b": 5_000}, {"a": 4, "b": 4}, None))
    # a is the bottleneck: all of a, and as much of b
    assert plans["a"].target_bytes == 1_000 and plans["b"].target_bytes == 1_000
    assert plans["a"].epochs == pytest.approx(1.0)


def test_a_short_source_is_upsampled_up_to_max_epochs_then_capped():
    plans = _by_name(plan_mixture({"a": 1, "b": 1}, {"a": 1_000, "b": 100_000}, {"a": 3, "b": 4}, 10_000))
    assert plans["a"].capped and plans["a"].epochs == 3 and plans["a"].target_bytes == 3_000
    assert not plans["b"].capped and plans["b"].target_bytes == 5_000
    upsampled = _by_name(plan_mixture({"a": 1}, {"a": 1_000}, {"a": 4}, 2_500))["a"]
    assert not upsampled.capped and upsampled.epochs == pytest.approx(2.5)


def test_selection_makes_whole_passes_then_samples_near_the_target():
    sizes = [100] * 10
    picks = select(sizes, 2_500, seed=0)
    assert [p for p in picks if p[1] < 2] == [(i, r) for r in range(2) for i in range(10)]
    partial = [i for i, r in picks if r == 2]
    assert len(partial) == 5 and len(set(partial)) == 5
    assert sum(sizes[i] for i, _ in picks) == 2_500


def test_selection_is_seeded_and_handles_nothing_to_do():
    sizes = [10 * (i + 1) for i in range(30)]
    assert select(sizes, 1_000, seed=1) == select(sizes, 1_000, seed=1)
    assert select(sizes, 1_000, seed=1) != select(sizes, 1_000, seed=2)
    assert abs(sum(sizes[i] for i, _ in select(sizes, 1_000, seed=1)) - 1_000) <= max(sizes)
    assert select(sizes, 0, seed=0) == [] and select([], 100, seed=0) == []


def test_selection_does_not_overshoot_with_a_huge_document():
    # taking the 1,000-byte document would land further from 150 than leaving it out
    assert select([1_000, 100, 50], 150, seed=0) == [(1, 0), (2, 0)]
