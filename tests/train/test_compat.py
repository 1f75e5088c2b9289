"""A run folder's checkpoints against a changed recipe: model shape, tokenizer, and an lr decay already begun
(case 2 of issue #31: a finished 40-step run resumed as a 60-step one jumped the lr from 0 back to the peak).

Checkpoints are written as the format says (`train/checkpoint.py`) without training, except in the last test,
which trains a short run to its end and asks it for more steps."""

from __future__ import annotations

from pretrain.core.errors import PretrainError
from pretrain.testing import run_train_stage, write_checkpoint
from pretrain.train.compat import resume_problems, run_folder_verdict, schedule_problem, shape_changes


def test_a_finished_schedule_is_not_extended(make_small_recipe, tmp_path):
    recipe = make_small_recipe(tmp_path / "run", "train.tokens=20480")
    folder = write_checkpoint(recipe, 40, 40)
    longer = make_small_recipe(tmp_path / "run", "train.tokens=30720")
    problem = schedule_problem(folder, longer, 60)
    assert (
        problem and "decayed to 0%" in problem and "pretrain anneal" in problem and "--output-dir" in problem
    )
    assert schedule_problem(folder, recipe, 40) is None  # the same run: nothing changes
    verdict = run_folder_verdict(longer, 60, None)
    assert not verdict.ok and verdict.line().startswith("✗ run folder: ")


def test_a_stable_phase_checkpoint_may_be_extended(make_small_recipe, tmp_path):
    # WSD: the decay is the last 30%; at step 20 of 40 the lr is still the peak, so 60 steps continue it
    recipe = make_small_recipe(tmp_path / "run", "train.tokens=20480")
    folder = write_checkpoint(recipe, 20, 40)
    assert schedule_problem(folder, make_small_recipe(tmp_path / "run", "train.tokens=30720"), 60) is None
    # mid-decay (step 32 of 40): more steps would put the lr back up
    folder = write_checkpoint(recipe, 32, 40)
    assert "put the lr back up" in schedule_problem(
        folder, make_small_recipe(tmp_path / "run", "train.tokens=30720"), 60
    )


def test_a_changed_model_shape_is_named(make_small_recipe, tmp_path):
    recipe = make_small_recipe(tmp_path / "run", "train.tokens=20480")
    folder = write_checkpoint(recipe, 20, 40)
    wider = make_small_recipe(tmp_path / "run", "train.tokens=20480", "model.hidden_size=96")
    assert shape_changes(folder, wider) == ["model.hidden_size: 64 -> 96"]
    (problem,) = resume_problems(folder, wider, 40)
    assert "another model shape" in problem and "--output-dir" in problem
    assert shape_changes(folder, make_small_recipe(tmp_path / "run", "model.init_std=0.01")) == []


def test_a_rebuilt_tokenizer_is_refused(make_small_recipe, tmp_path):
    recipe = make_small_recipe(tmp_path / "run", "train.tokens=20480")
    write_checkpoint(recipe, 20, 40)
    verdict = run_folder_verdict(recipe, 40, "tokenizer.vocab_size: 512 -> 256")
    assert (
        not verdict.ok and "tokenizer/ would be rebuilt (tokenizer.vocab_size: 512 -> 256)" in verdict.detail
    )


def test_training_a_finished_run_on_is_refused_and_final_kept(make_run, tmp_path):
    out = tmp_path / "run"
    recipe = make_run(out, "train.tokens=4096", "train.checkpoint.every_steps=4", "eval.enabled=false")
    run_train_stage(recipe, resume="never")
    final = (out / "final" / "model.safetensors").read_bytes()
    longer = make_run(out, "train.tokens=6144", "train.checkpoint.every_steps=4", "eval.enabled=false")
    try:
        run_train_stage(longer, resume="auto")
    except PretrainError as exc:
        assert "pretrain anneal" in str(exc) and "step-0000008" in str(exc)
    else:
        raise AssertionError("a finished run was trained on past its decay")
    assert (out / "final" / "model.safetensors").read_bytes() == final


def test_a_pruned_checkpoint_is_named_with_the_ones_that_exist(make_small_recipe, tmp_path):
    """Case 10 of issue #31: anneal / --resume on a checkpoint that keep_last had pruned said "no
    trainer_state/COMPLETE"; now "no such checkpoint; available: ..."."""
    from pretrain.commands.anneal import AnnealError, anneal_recipe
    from pretrain.train.checkpoint import not_a_checkpoint

    recipe = make_small_recipe(tmp_path / "run", "train.tokens=20480")
    for step in (32, 36, 40):
        write_checkpoint(recipe, step, 40)
    pruned = recipe.layout.checkpoint(12)
    message = not_a_checkpoint(pruned)
    assert "no such checkpoint" in message and "keep_last" in message
    assert message.endswith(
        "available in " + str(recipe.layout.checkpoints) + ": step-0000032, step-0000036, step-0000040"
    )
    try:
        anneal_recipe(pruned, tmp_path / "anneal", {"stdlib_docs": 1.0}, steps=4)
    except AnnealError as exc:
        assert str(exc) == message
    else:
        raise AssertionError("annealed from a pruned checkpoint")


def test_a_damaged_newest_checkpoint_is_passed_over_as_training_passes_over_it(make_small_recipe, tmp_path):
    """#33: a truncated state.json in the newest checkpoint made preflight a JSONDecodeError traceback, though
    `--resume auto` skips that checkpoint with a warning and resumes the one before."""
    recipe = make_small_recipe(tmp_path / "run", "train.tokens=20480")
    write_checkpoint(recipe, 20, 40)
    newest = write_checkpoint(recipe, 32, 40)
    state = newest / "trainer_state" / "state.json"
    state.write_text(state.read_text()[:18])
    verdict = run_folder_verdict(make_small_recipe(tmp_path / "run", "train.tokens=30720"), 60, None)
    assert verdict.ok, verdict.line()  # step 20 is in the stable phase: 60 steps continue it
    assert "resumes step-0000020 (step 20 of 60)" in verdict.line()
