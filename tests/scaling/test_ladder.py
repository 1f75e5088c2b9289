"""The ladder's design (scaling/ladder.py): shapes, budgets, branch points, and the recipes it refuses.

The orchestration (`pretrain ladder`: rungs trained, cached, fitted, submitted to Slurm) is tested in
tests/commands/test_ladder.py.
"""

from __future__ import annotations

import pytest

from pretrain.config import load_recipe
from pretrain.core.errors import RecipeError
from pretrain.scaling.family import Family
from pretrain.scaling.ladder import LadderError, decay_steps, design_ladder, steps_for_decay_start
from pretrain.train.schedules import lr_multiplier

TINY_LADDER = ["ladder.budget_unit=target_fraction", "ladder.budgets=[0.1,0.2,0.4]"]


def tiny(tmp_path, *overrides: str):
    return load_recipe(
        "recipes/tiny/config.yaml", overrides=[*TINY_LADDER, *overrides], output_dir=str(tmp_path)
    )


# ---------------------------------------------------------------------------------------------- design
def test_design_spans_ten_x_in_the_recipes_family(tmp_path):
    recipe = tiny(tmp_path, "ladder.sizes=4")
    design = design_ladder(recipe)
    sizes = design.sizes()
    assert len(sizes) == 4 and sizes[-1] / sizes[0] >= 10
    assert sizes[-1] < design.target_non_embedding_params  # every rung is smaller than the target
    family = Family.of(recipe)
    for run in design.runs:
        shape = run.shape
        assert (
            shape.hidden_size == shape.num_attention_heads * family.head_dim == shape.num_attention_heads * 32
        )
        assert shape.intermediate_size == 3 * shape.hidden_size  # the recipe's MLP ratio (384 / 128)
        assert run.tokens == run.steps * recipe.train.global_batch_tokens
    # budgets are fractions of the target's tokens: the same three lengths for every size
    assert sorted({r.tokens for r in design.runs}) == sorted({r.tokens for r in design.runs if r.size == 0})


def test_branches_share_the_long_runs_lr_up_to_their_decay(tmp_path):
    recipe = tiny(tmp_path)
    design = design_ladder(recipe)
    schedule = recipe.train.schedule
    for run in design.runs:
        long_run = next(r for r in design.runs if r.size == run.size and r.branch_of is None)
        # the long run of a size comes first: its checkpoints exist when its branches start
        assert design.runs.index(long_run) <= design.runs.index(run)
        assert run.steps - decay_steps(run.steps, design.decay_fraction) == run.decay_start
        assert run.decay_start % long_run.checkpoint_every == 0  # a checkpoint exists at every branch point
        branch = schedule.model_copy(update={"warmup_steps": run.warmup_steps})
        long_schedule = schedule.model_copy(update={"warmup_steps": long_run.warmup_steps})
        lrs = [lr_multiplier(t, run.steps, branch) for t in range(run.decay_start)]
        assert lrs == [lr_multiplier(t, long_run.steps, long_schedule) for t in range(run.decay_start)]
        assert lr_multiplier(run.decay_start, run.steps, branch) < 1.0  # and decays from there


@pytest.mark.parametrize("start,fraction", [(14, 0.3), (56, 0.3), (50, 0.2), (7, 0.5), (1, 0.1)])
def test_steps_for_decay_start_is_exact(start, fraction):
    steps = steps_for_decay_start(start, fraction)
    assert steps - decay_steps(steps, fraction) == start


def test_gpu_recipes_have_ladders_within_a_fraction_of_their_compute():
    for name in ("smollm2-135m", "smollm2-360m", "llama-1b"):
        recipe = load_recipe(f"recipes/{name}/config.yaml", check_files=False)
        design = design_ladder(recipe)
        target = 6 * design.target_non_embedding_params * design.target_tokens
        assert 3 <= len(design.long_runs()) <= 6
        assert design.sizes()[-1] / design.sizes()[0] >= 10
        assert design.flops < 0.2 * target, name  # the forecast costs a small part of the run


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "override,problem",
    [
        ("ladder.sizes=2", r"ladder\.sizes: .*greater than or equal to 3"),
        ("ladder.budgets=[0.4]", r"ladder\.budgets: .*at least 2"),
        ("ladder.smallest=0.1", r"must span at least 10x"),
        ("ladder.budgets=[0.2,0.2]", r"must be distinct"),
    ],
)
def test_too_few_rungs_is_a_recipe_error(tmp_path, override, problem):
    with pytest.raises(RecipeError, match=problem):
        tiny(tmp_path, override)


def test_a_budget_too_short_for_min_steps_names_the_rung(tmp_path):
    with pytest.raises(LadderError, match=r"budget 0\.01 .* of size s0 .* under ladder\.min_steps=10"):
        design_ladder(tiny(tmp_path, "ladder.budgets=[0.01,0.4]"))


def test_a_budget_below_the_smallest_rung_is_an_error(tmp_path):
    with pytest.raises(
        LadderError, match=r"--budget-flops 1e\+10: .* the smallest rung .* is below the smallest model"
    ):
        design_ladder(tiny(tmp_path), budget_flops=1e10)
    assert design_ladder(tiny(tmp_path), budget_flops=1e15).target_source.startswith("Chinchilla-optimal")


def test_a_model_without_llama_keys_is_an_error(tmp_path):
    recipe = tiny(tmp_path)
    recipe.model = recipe.model.model_copy(update={"model_type": "gpt2"})
    recipe.model.__pydantic_extra__ = {"n_embd": 64, "n_layer": 2, "n_head": 2}
    with pytest.raises(LadderError, match=r"model_type gpt2 sets none of hidden_size"):
        design_ladder(recipe)
