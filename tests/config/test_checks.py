"""Whole-recipe checks that one field's type cannot express: model fields against the transformers config
class, combinations across sections, train.data_stages, and the files a recipe names. Each check returns
`file: dotted.key: problem (what to do)` lines and raises nothing."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pretrain.config import Recipe
from pretrain.config.checks import (
    FUSED_CE_UNDER_FSDP,
    MUON_UNDER_TP,
    UNSUPPORTED_DEEPSPEED,
    combination_problems,
    data_stage_problems,
    file_problems,
    missing_template_problem,
)
from pretrain.config.model_checks import model_field_problems

LABEL = "r.yaml"
BASE = {
    "name": "t",
    "data": {"sources": [{"name": "web", "type": "builtin", "corpus": "python_stdlib_code", "weight": 1.0}]},
    "model": {"model_type": "llama", "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2},
    "train": {"seq_len": 16, "micro_batch_size": 1, "global_batch_tokens": 16, "steps": 4},
}


def _merge(into: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def make_recipe(folder: Path, **changes) -> Recipe:
    """A recipe that passed pydantic's validation only (no checks), as if loaded from `folder`/recipe.yaml."""
    recipe = Recipe.model_validate(_merge(copy.deepcopy(BASE), changes))
    recipe._path = folder / "recipe.yaml"
    return recipe


def launch_config(folder: Path, **settings) -> str:
    path = folder / "launch.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path.name


# ---------------------------------------------------------------------------------------------- model fields
def test_a_valid_model_section_has_no_problem(tmp_path):
    assert model_field_problems(make_recipe(tmp_path), LABEL) == []


def test_an_unknown_model_type_names_similar_ones(tmp_path):
    (problem,) = model_field_problems(make_recipe(tmp_path, model={"model_type": "qwen9"}), LABEL)
    assert problem.startswith("r.yaml: model.model_type: unknown model type 'qwen9' (similar: ")
    assert "qwen2" in problem


def test_an_unknown_model_type_like_no_other_gives_examples(tmp_path):
    (problem,) = model_field_problems(make_recipe(tmp_path, model={"model_type": "zzzz"}), LABEL)
    assert problem == (
        "r.yaml: model.model_type: unknown model type 'zzzz' (any transformers model_type, e.g. llama, qwen2, gpt2)"
    )


def test_a_misspelt_field_is_not_a_field_of_the_config(tmp_path):
    problems = model_field_problems(make_recipe(tmp_path, model={"hiden_size": 64}), LABEL)
    assert problems == [
        "r.yaml: model.hiden_size: not a field of the llama config; remove it or check its spelling"
    ]


def test_a_legacy_key_the_config_folds_into_another_field_is_accepted(tmp_path):
    assert model_field_problems(make_recipe(tmp_path, model={"rope_theta": 50000.0}), LABEL) == []


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("tie_word_embeddings", 1, "model.tie_word_embeddings: expected true or false, got 1"),
        ("num_hidden_layers", 2.0, "model.num_hidden_layers: expected an integer, got 2.0"),
        ("num_hidden_layers", True, "model.num_hidden_layers: expected an integer, got True"),
        ("rms_norm_eps", -1e-6, "model.rms_norm_eps: must not be negative, got -1e-06"),
        ("intermediate_size", 0, "model.intermediate_size: must be at least 1, got 0"),
    ],
)
def test_a_field_of_the_wrong_type_or_range_is_named_with_its_value(tmp_path, field, value, problem):
    assert model_field_problems(make_recipe(tmp_path, model={field: value}), LABEL) == [f"{LABEL}: {problem}"]


def test_every_bad_field_is_reported_at_once(tmp_path):
    recipe = make_recipe(
        tmp_path, model={"hiden_size": 1, "tie_word_embeddings": "yes", "intermediate_size": 0}
    )
    assert len(model_field_problems(recipe, LABEL)) == 3


def test_a_config_with_a_fixed_default_head_dim_asks_for_head_dim(tmp_path):
    recipe = make_recipe(tmp_path, model={"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 2})
    (problem,) = model_field_problems(recipe, LABEL)
    assert problem.startswith("r.yaml: model.head_dim: the qwen3 config defaults head_dim to 128, not ")
    assert "hidden_size / num_attention_heads = 32; set model.head_dim (32 keeps the usual shape)" in problem


def test_an_explicit_head_dim_or_a_config_deriving_it_has_no_head_dim_problem(tmp_path):
    qwen3 = {"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 2, "head_dim": 32}
    assert model_field_problems(make_recipe(tmp_path, model=qwen3), LABEL) == []
    llama = {"hidden_size": 64, "num_attention_heads": 2}
    assert model_field_problems(make_recipe(tmp_path, model=llama), LABEL) == []


# ---------------------------------------------------------------------------------------------- combinations
def test_a_valid_recipe_has_no_combination_problem(tmp_path):
    assert combination_problems(make_recipe(tmp_path), LABEL) == []


def test_a_deepspeed_launch_is_refused_with_the_alternative(tmp_path):
    launch = launch_config(tmp_path, distributed_type="DEEPSPEED", num_processes=1)
    problems = combination_problems(make_recipe(tmp_path, accelerate_config=launch), LABEL)
    assert problems == [f"{LABEL}: accelerate_config: {UNSUPPORTED_DEEPSPEED}"]
    assert "fsdp.yaml" in UNSUPPORTED_DEEPSPEED


def test_muon_under_fsdp_is_fine(tmp_path):
    """DistributedMuon orthogonalises FSDP2 shards whole on their owner rank (train/muon.py)."""
    launch = launch_config(tmp_path, distributed_type="FSDP", num_processes=1)
    recipe = make_recipe(tmp_path, accelerate_config=launch, train={"optimizer": {"name": "muon"}})
    assert combination_problems(recipe, LABEL) == []


def test_muon_under_ddp_is_fine(tmp_path):
    launch = launch_config(tmp_path, distributed_type="MULTI_GPU", num_processes=1)
    recipe = make_recipe(tmp_path, accelerate_config=launch, train={"optimizer": {"name": "muon"}})
    assert combination_problems(recipe, LABEL) == []


def test_a_forced_fused_loss_under_fsdp_is_refused_but_auto_is_fine(tmp_path):
    launch = launch_config(tmp_path, distributed_type="FSDP", num_processes=1)
    forced = make_recipe(tmp_path, accelerate_config=launch, train={"fused_cross_entropy": True})
    assert combination_problems(forced, LABEL) == [
        f"{LABEL}: train.fused_cross_entropy: {FUSED_CE_UNDER_FSDP}"
    ]
    auto = make_recipe(tmp_path, accelerate_config=launch, train={"fused_cross_entropy": "auto"})
    assert combination_problems(auto, LABEL) == []


def test_a_batch_that_the_launch_configs_processes_cannot_split_is_named(tmp_path):
    launch = launch_config(tmp_path, distributed_type="MULTI_GPU", num_processes=3)
    (problem,) = combination_problems(make_recipe(tmp_path, accelerate_config=launch), LABEL)
    assert problem.startswith(
        f"{LABEL}: train.global_batch_tokens: train.global_batch_tokens=16 is not divisible"
    )
    assert "(world_size=3)" in problem


def test_a_batch_split_evenly_over_the_processes_is_fine(tmp_path):
    launch = launch_config(tmp_path, distributed_type="MULTI_GPU", num_processes=2)
    recipe = make_recipe(tmp_path, accelerate_config=launch, train={"global_batch_tokens": 64})
    assert combination_problems(recipe, LABEL) == []


def test_a_launch_mesh_is_checked_against_the_processes_the_model_and_muon(tmp_path):
    sizes = {"parallelism_config_dp_shard_size": 2, "parallelism_config_tp_size": 2}
    launch = launch_config(tmp_path, distributed_type="MULTI_GPU", num_processes=4, parallelism_config=sizes)
    model = {"hidden_size": 33, "num_attention_heads": 3, "num_key_value_heads": 3, "intermediate_size": 64}
    problems = combination_problems(make_recipe(tmp_path, accelerate_config=launch, model=model), LABEL)
    assert [p.split(": ")[1] for p in problems if "tp_size 2" in p] == [
        "model.num_attention_heads",
        "model.num_key_value_heads",
        "model.hidden_size",
    ]
    muon = make_recipe(
        tmp_path, accelerate_config=launch, train={"optimizer": {"name": "muon"}, "global_batch_tokens": 32}
    )
    assert combination_problems(muon, LABEL) == [f"{LABEL}: train.optimizer.name: {MUON_UNDER_TP}"]
    # 2 x 2 leaves 2 data-parallel ranks: the batch splits over them, not over the 4 processes
    assert (
        combination_problems(
            make_recipe(tmp_path, accelerate_config=launch, train={"global_batch_tokens": 32}), LABEL
        )
        == []
    )
    wrong = launch_config(tmp_path, distributed_type="MULTI_GPU", num_processes=8, parallelism_config=sizes)
    (problem,) = combination_problems(make_recipe(tmp_path, accelerate_config=wrong), LABEL)
    assert "= 4 processes, but the launch has 8 processes" in problem


def test_an_expert_parallel_launch_is_checked_against_the_models_experts(tmp_path):
    """`pretrain validate` names the expert count that does not split over the ep ranks, and ep on a dense model."""
    sizes = {"parallelism_config_dp_shard_size": 4, "parallelism_config_ep_size": 4}
    launch = launch_config(tmp_path, distributed_type="MULTI_GPU", num_processes=4, parallelism_config=sizes)
    moe = {"model_type": "qwen3_moe", "num_experts": 6, "num_experts_per_tok": 2}
    train = {"global_batch_tokens": 64}
    problems = combination_problems(
        make_recipe(tmp_path, accelerate_config=launch, model=moe, train=train), LABEL
    )
    assert problems == [
        f"{LABEL}: model.num_experts: 6 experts do not divide across parallelism_config_ep_size 4 (accelerate_config "
        f"{launch}: parallelism_config); each expert-parallel rank holds an equal share of every layer's experts: "
        "pick an ep_size that divides 6 (and parallelism_config_dp_shard_size), or change num_experts"
    ]
    moe["num_experts"] = 8
    assert (
        combination_problems(make_recipe(tmp_path, accelerate_config=launch, model=moe, train=train), LABEL)
        == []
    )
    (dense,) = combination_problems(make_recipe(tmp_path, accelerate_config=launch, train=train), LABEL)
    assert dense.startswith(f"{LABEL}: model.model_type: llama has no routed experts")


def test_hidden_size_must_divide_into_the_heads(tmp_path):
    recipe = make_recipe(
        tmp_path, model={"hidden_size": 30, "num_attention_heads": 4, "num_key_value_heads": 4}
    )
    assert combination_problems(recipe, LABEL) == [
        f"{LABEL}: model.hidden_size: 30 is not divisible by num_attention_heads=4"
    ]


def test_query_heads_must_divide_into_the_kv_heads(tmp_path):
    recipe = make_recipe(
        tmp_path, model={"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 3}
    )
    assert combination_problems(recipe, LABEL) == [
        f"{LABEL}: model.num_key_value_heads: 4 heads are not divisible by 3 kv heads"
    ]


def test_positions_must_cover_the_sequence_length(tmp_path):
    recipe = make_recipe(tmp_path, model={"max_position_embeddings": 8})
    assert combination_problems(recipe, LABEL) == [
        f"{LABEL}: model.max_position_embeddings: 8 < train.seq_len=16; raise it"
    ]
    assert combination_problems(make_recipe(tmp_path, model={"max_position_embeddings": 16}), LABEL) == []


def test_extending_a_tokenizer_needs_one_to_reuse(tmp_path):
    extend = {"extend": {"tokens": ["<tool>"]}}
    (problem,) = combination_problems(make_recipe(tmp_path, tokenizer=extend), LABEL)
    assert problem.startswith(f"{LABEL}: tokenizer.extend: extends a reused tokenizer, but none is set")
    reused = make_recipe(tmp_path, tokenizer={**extend, "pretrained": "gpt2"})
    assert combination_problems(reused, LABEL) == []
    parent = make_recipe(tmp_path, tokenizer=extend, model={"init_from": "me/parent"})
    assert combination_problems(parent, LABEL) == []


def test_pushing_checkpoints_needs_a_repo(tmp_path):
    recipe = make_recipe(tmp_path, hub={"push_checkpoints": True})
    assert combination_problems(recipe, LABEL) == [
        f"{LABEL}: hub.push_checkpoints: needs hub.repo_id to be set"
    ]
    recipe = make_recipe(tmp_path, hub={"push_checkpoints": True, "repo_id": "me/tiny"})
    assert combination_problems(recipe, LABEL) == []


def test_combination_problems_include_the_data_stage_problems(tmp_path):
    recipe = make_recipe(tmp_path, train={"data_stages": [{"share": 1.0, "weights": {"code": 1.0}}]})
    assert combination_problems(recipe, LABEL) == data_stage_problems(recipe, LABEL) != []


# ---------------------------------------------------------------------------------------------- data stages
TWO_SOURCES = {
    "sources": [
        {"name": "web", "type": "builtin", "corpus": "python_stdlib_code", "weight": 1.0},
        {"name": "docs", "type": "builtin", "corpus": "python_stdlib_docs", "weight": 1.0},
    ]
}


def staged(tmp_path: Path, *stages: dict, **train) -> Recipe:
    return make_recipe(tmp_path, data=TWO_SOURCES, train={"data_stages": list(stages), **train})


def test_a_recipe_without_data_stages_has_no_stage_problem(tmp_path):
    assert data_stage_problems(make_recipe(tmp_path), LABEL) == []


def test_stages_whose_shares_add_up_to_one_are_fine(tmp_path):
    recipe = staged(
        tmp_path, {"share": 0.5, "weights": {"web": 1.0}}, {"share": 0.5, "weights": {"docs": 1.0}}
    )
    assert data_stage_problems(recipe, LABEL) == []


def test_stages_whose_tokens_add_up_to_the_runs_tokens_are_fine(tmp_path):
    recipe = staged(
        tmp_path, {"tokens": 32, "weights": {"web": 1.0}}, {"tokens": 32, "weights": {"docs": 1.0}}
    )
    assert data_stage_problems(recipe, LABEL) == []  # 4 steps x 16 tokens


def test_a_stage_weighting_an_unknown_source_names_the_sources(tmp_path):
    recipe = staged(tmp_path, {"share": 1.0, "weights": {"web": 1.0, "code": 2.0}})
    assert data_stage_problems(recipe, LABEL) == [
        f"{LABEL}: train.data_stages.0.weights.code: no source named 'code' in data.sources (sources: web, docs)"
    ]


def test_shares_and_token_counts_cannot_be_mixed(tmp_path):
    recipe = staged(
        tmp_path, {"share": 0.5, "weights": {"web": 1.0}}, {"tokens": 32, "weights": {"docs": 1.0}}
    )
    (problem,) = data_stage_problems(recipe, LABEL)
    assert problem.startswith(
        f"{LABEL}: train.data_stages.1.tokens: stages [0] give a share; give every stage"
    )


def test_shares_that_do_not_add_up_to_one_are_an_error(tmp_path):
    recipe = staged(
        tmp_path, {"share": 0.5, "weights": {"web": 1.0}}, {"share": 0.4, "weights": {"docs": 1.0}}
    )
    (problem,) = data_stage_problems(recipe, LABEL)
    assert problem.startswith(f"{LABEL}: train.data_stages: the stages' shares add up to 0.9, not 1")


def test_token_counts_that_miss_the_runs_length_are_an_error(tmp_path):
    recipe = staged(
        tmp_path, {"tokens": 32, "weights": {"web": 1.0}}, {"tokens": 16, "weights": {"docs": 1.0}}
    )
    (problem,) = data_stage_problems(recipe, LABEL)
    assert problem.startswith(
        f"{LABEL}: train.data_stages: the stages' tokens add up to 48, but the run trains 64 tokens"
    )


def test_token_counts_need_a_run_length_known_from_the_recipe(tmp_path):
    recipe = staged(tmp_path, {"tokens": 32, "weights": {"web": 1.0}}, steps=None, tokens_per_param=20.0)
    (problem,) = data_stage_problems(recipe, LABEL)
    assert problem.startswith(
        f"{LABEL}: train.data_stages.0.tokens: the run's length is train.tokens_per_param"
    )


def test_a_stage_too_short_for_one_optimizer_step_is_an_error(tmp_path):
    recipe = staged(
        tmp_path, {"share": 0.1, "weights": {"web": 1.0}}, {"share": 0.9, "weights": {"docs": 1.0}}
    )
    assert data_stage_problems(recipe, LABEL) == [
        f"{LABEL}: train.data_stages.0: gets no optimizer step of the run's 4; give it a larger share or remove it"
    ]


def test_with_tokens_per_param_shares_are_checked_but_not_steps(tmp_path):
    recipe = staged(
        tmp_path,
        {"share": 0.01, "weights": {"web": 1.0}},
        {"share": 0.99, "weights": {"docs": 1.0}},
        steps=None,
        tokens_per_param=20.0,
    )
    assert data_stage_problems(recipe, LABEL) == []


# ---------------------------------------------------------------------------------------------- files
def local_source(*paths: str) -> dict:
    return {"sources": [{"name": "mine", "type": "local", "paths": list(paths), "weight": 1.0}]}


def test_a_builtin_only_recipe_has_no_file_problem(tmp_path):
    assert file_problems(make_recipe(tmp_path), LABEL) == []


def test_local_files_next_to_the_recipe_and_matching_globs_are_found(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-0.jsonl").write_text("{}\n")
    recipe = make_recipe(tmp_path, data=local_source("a.jsonl", "shards/*.jsonl"))
    assert file_problems(recipe, LABEL) == []


def test_a_missing_local_file_is_named_with_its_source(tmp_path):
    recipe = make_recipe(tmp_path, data=local_source(str(tmp_path / "gone.jsonl")))
    assert file_problems(recipe, LABEL) == [
        f"{LABEL}: data.sources.0.paths.0: file not found: {tmp_path / 'gone.jsonl'} (source 'mine')"
    ]


def test_a_glob_matching_nothing_is_named_with_its_pattern(tmp_path):
    pattern = str(tmp_path / "none" / "*.parquet")
    recipe = make_recipe(tmp_path, data=local_source(pattern))
    assert file_problems(recipe, LABEL) == [
        f"{LABEL}: data.sources.0.paths.0: no file matches {pattern!r} (source 'mine')"
    ]


def test_a_missing_local_eval_task_file_is_named(tmp_path):
    task = {"name": "mine", "format": "text_rolling", "path": str(tmp_path / "task.jsonl")}
    recipe = make_recipe(tmp_path, eval={"local_tasks": [task]})
    assert file_problems(recipe, LABEL) == [
        f"{LABEL}: eval.local_tasks.0.path: file not found: {tmp_path / 'task.jsonl'}"
    ]


def test_a_pretrained_ref_must_be_a_folder_or_a_hub_id(tmp_path):
    (tmp_path / "parent").mkdir()
    fine = make_recipe(tmp_path, tokenizer={"pretrained": "parent"}, model={"init_from": "me/model@main"})
    assert file_problems(fine, LABEL) == []
    bad = make_recipe(tmp_path, tokenizer={"pretrained": "no such/folder"}, model={"init_from": "me/model@"})
    assert file_problems(bad, LABEL) == [
        f"{LABEL}: tokenizer.pretrained: 'no such/folder' is neither an existing folder nor a Hub id "
        "(`owner/name[@revision]`)",
        f"{LABEL}: model.init_from: 'me/model@' is neither an existing folder nor a Hub id (`owner/name[@revision]`)",
    ]


def test_a_missing_accelerate_config_is_named(tmp_path):
    recipe = make_recipe(tmp_path, accelerate_config="launch/none.yaml")
    assert file_problems(recipe, LABEL) == [f"{LABEL}: accelerate_config: file not found: launch/none.yaml"]


def test_a_card_template_is_a_shipped_name_or_a_file_next_to_the_recipe(tmp_path):
    (tmp_path / "card.md.j2").write_text("# {{ name }}\n")
    assert file_problems(make_recipe(tmp_path, hub={"card_template": "card.md.j2"}), LABEL) == []
    assert file_problems(make_recipe(tmp_path, hub={"card_template": "base_model.md.j2"}), LABEL) == []


def test_a_missing_card_template_lists_the_shipped_ones(tmp_path):
    recipe = make_recipe(tmp_path, hub={"card_template": "nope.md.j2"})
    problem = missing_template_problem(recipe)
    assert file_problems(recipe, LABEL) == [problem]
    assert problem.startswith(
        f"{tmp_path / 'recipe.yaml'}: hub.card_template: template 'nope.md.j2' not found (not a shipped template: "
    )
    assert "base_model.md.j2" in problem and "; nor a file at " in problem


def test_a_pipe_as_a_local_source_is_refused(tmp_path):
    """A FIFO named as a source file hung curation (opening it waits for a writer)."""
    import os

    fifo = tmp_path / "corpus.txt"
    os.mkfifo(fifo)
    recipe = make_recipe(
        tmp_path, data={"sources": [{"name": "web", "type": "local", "paths": [str(fifo)], "weight": 1.0}]}
    )
    (problem,) = file_problems(recipe, LABEL)
    assert problem.startswith(f"{LABEL}: data.sources.0.paths.0: {fifo} is not a regular file"), problem


def test_an_output_folder_that_is_a_file_or_cannot_be_made_is_refused(tmp_path):
    """An existing regular file as --output-dir was accepted (each stage then failed on it)."""
    regular = tmp_path / "a-file"
    regular.write_text("x")
    assert file_problems(make_recipe(tmp_path, output_dir=str(regular)), LABEL) == [
        f"{LABEL}: output_dir: {regular} is a file, not a folder; name a folder (or remove the file)"
    ]
    under = regular / "run"
    assert file_problems(make_recipe(tmp_path, output_dir=str(under)), LABEL) == [
        f"{LABEL}: output_dir: {under} cannot be made: {regular} is a file, not a folder; pick another"
    ]
    assert file_problems(make_recipe(tmp_path, output_dir=str(tmp_path / "new" / "run")), LABEL) == []
