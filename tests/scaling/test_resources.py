"""Disk and memory a run needs, from its plan: only the stages that will run count, and a shortfall is a ✗
naming the knobs that shrink it."""

from __future__ import annotations

from pretrain.scaling.resources import disk_needed, disk_verdict, memory_verdict, size_text


def test_disk_counts_only_the_stages_that_run(make_small_recipe, tmp_path):
    recipe = make_small_recipe(tmp_path / "run")  # a mix of 800 kB, checkpoints of a 40k-parameter model
    everything = disk_needed(recipe, params=40_000, vocab=512, stages={"curate", "pack", "train"})
    assert everything["curate"] == 2 * 800_000
    assert everything["pack"] == 2 * (800_000 / 4.0) * 2  # uint16 tokens, plus the scratch copy
    keep = recipe.train.checkpoint.keep_last
    assert everything["train"] == (keep + 1) * 40_000 * 12 + 40_000 * 4
    assert disk_needed(recipe, 40_000, 512, {"train"}).keys() == {"train"}
    assert disk_verdict(recipe, 40_000, 512, {"curate"}).ok


def test_disk_shortfall_is_a_failure(make_small_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr("pretrain.scaling.resources.free_bytes", lambda folder: 1000)
    verdict = disk_verdict(make_small_recipe(tmp_path / "run"), 40_000, 512, {"curate"})
    assert not verdict.ok and "1 kB free" in verdict.detail and "--output-dir" in verdict.detail


def test_memory():
    assert memory_verdict(10.0, "H100", 80.0).ok
    too_big = memory_verdict(90.0, "H100", 80.0)
    assert not too_big.ok and "micro_batch_size" in too_big.detail
    assert memory_verdict(1.0, "a GPU", None).ok
    assert size_text(81.8e9) == "81.8 GB" and size_text(512) == "512 B"
