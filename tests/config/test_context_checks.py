"""Context-extension stages: each bad one is one `file: key: problem` line before any work (a stage that
shortens the context, a RoPE scaling the architecture does not know, RoPE on a model without it, a batch that
does not divide, a max_position_embeddings below the longest stage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain.config import Recipe
from pretrain.config.checks import combination_problems
from pretrain.config.context_checks import context_stage_problems, longest_seq_len

LABEL = "r.yaml"
W = {"web": 1.0}


def make_recipe(folder: Path, model: dict, train: dict) -> Recipe:
    """A recipe that passed pydantic's validation only (no checks), as if loaded from `folder`/recipe.yaml."""
    recipe = Recipe.model_validate(
        {
            "name": "t",
            "data": {
                "sources": [{"name": "web", "type": "builtin", "corpus": "python_stdlib_code", "weight": 1.0}]
            },
            "model": {"model_type": "llama", "hidden_size": 32, "num_attention_heads": 2, **model},
            "train": {"micro_batch_size": 1, "global_batch_tokens": 64, "steps": 4, **train},
        }
    )
    recipe._path = folder / "recipe.yaml"
    return recipe


def _recipe(tmp_path: Path, *stages, model=None, **train):
    return make_recipe(
        tmp_path,
        model={"max_position_embeddings": 64, **(model or {})},
        train={
            "seq_len": 16,
            "micro_batch_size": 2,
            "global_batch_tokens": 64,
            **train,
            "data_stages": list(stages),
        },
    )


def test_a_good_long_stage_has_no_problem(tmp_path):
    recipe = _recipe(
        tmp_path,
        {"share": 0.5, "weights": W},
        {"share": 0.5, "weights": W, "seq_len": 32, "rope_theta": 40000.0},
    )
    assert combination_problems(recipe, LABEL) == []
    assert longest_seq_len(recipe) == 32


def test_a_stage_that_shortens_the_context_is_refused(tmp_path):
    recipe = _recipe(
        tmp_path,
        {"share": 0.5, "weights": W, "seq_len": 32},
        {"share": 0.5, "weights": W, "seq_len": 16},
    )
    assert context_stage_problems(recipe, LABEL) == [
        "r.yaml: train.data_stages.1.seq_len: 16 is shorter than 32 (train.data_stages.0.seq_len); a stage "
        "may keep or raise the context, never shorten it"
    ]


def test_a_first_stage_shorter_than_train_seq_len_is_refused(tmp_path):
    (problem,) = context_stage_problems(_recipe(tmp_path, {"share": 1.0, "weights": W, "seq_len": 8}), LABEL)
    assert problem.startswith("r.yaml: train.data_stages.0.seq_len: 8 is shorter than 16 (train.seq_len)")


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        (
            {"rope_type": "ntk-magic", "factor": 2.0},
            "r.yaml: train.data_stages.1.rope_scaling.rope_type: 'ntk-magic' is not a RoPE scaling transformers "
            "knows for llama (known: default, linear, dynamic, yarn, longrope, llama3); pick one of those",
        ),
        ({"rope_type": "yarn"}, "r.yaml: train.data_stages.1.rope_scaling: transformers refuses these RoPE"),
    ],
)
def test_a_rope_scaling_the_architecture_does_not_know_is_refused(tmp_path, scaling, expected):
    recipe = _recipe(
        tmp_path,
        {"share": 0.5, "weights": W},
        {"share": 0.5, "weights": W, "seq_len": 32, "rope_scaling": scaling},
    )
    (problem,) = context_stage_problems(recipe, LABEL)
    assert problem.startswith(expected)
    if scaling["rope_type"] == "yarn":
        assert "factor" in problem  # transformers' own reason: the missing key


def test_rope_settings_on_a_model_without_rope_are_refused(tmp_path):
    recipe = make_recipe(
        tmp_path,
        model={"model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_positions": 64},
        train={"seq_len": 16, "data_stages": [{"share": 1.0, "weights": W, "rope_theta": 5e5}]},
    )
    (problem,) = context_stage_problems(recipe, LABEL)
    assert problem.startswith("r.yaml: train.data_stages.0.rope_theta: a gpt2 model has no rotary position")


def test_a_long_stage_whose_batch_does_not_divide_is_refused(tmp_path):
    recipe = _recipe(tmp_path, {"share": 1.0, "weights": W, "seq_len": 48})
    (problem,) = context_stage_problems(recipe, LABEL)
    assert problem == (
        "r.yaml: train.data_stages.0.seq_len: train.global_batch_tokens=64 is not a multiple of this stage's "
        "micro batch 1 x seq_len 48 x 1 process(es) = 48; change the batch, the stage's seq_len or its "
        "micro_batch_size"
    )


def test_max_position_embeddings_below_the_longest_stage_is_refused(tmp_path):
    recipe = _recipe(tmp_path, {"share": 1.0, "weights": W, "seq_len": 128}, global_batch_tokens=128)
    assert (
        "r.yaml: model.max_position_embeddings: 64 < the longest train.data_stages seq_len=128; raise it"
        in combination_problems(recipe, LABEL)
    )
