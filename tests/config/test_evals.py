"""Recipe section `eval`: the tasks evaluated in the loop, and benchmarks read from local JSONL files."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.evals import EvalConfig, LocalTask


def test_the_default_is_held_out_bits_per_byte_every_tenth_of_training():
    cfg = EvalConfig()
    assert cfg.enabled is True and cfg.every_fraction == 0.1 and cfg.tasks == ["val_bpb"]
    assert cfg.local_tasks == [] and cfg.limit is None
    assert (cfg.batch_size, cfg.num_fewshot) == (8, 0)


def test_local_tasks_are_read_from_mappings():
    cfg = EvalConfig(
        local_tasks=[{"name": "my_arc", "format": "mc_query_choices", "path": "arc.jsonl", "limit": 50}]
    )
    (task,) = cfg.local_tasks
    assert isinstance(task, LocalTask)
    assert (task.name, task.format, task.path, task.limit) == ("my_arc", "mc_query_choices", "arc.jsonl", 50)


@pytest.mark.parametrize(
    "fmt", ["mc_query_choices", "lambada_context", "winogrande_partial", "blimp_pairs", "text_rolling"]
)
def test_every_documented_layout_is_a_format(fmt):
    assert LocalTask(name="t", format=fmt, path="t.jsonl").format == fmt


@pytest.mark.parametrize("name", ["my-task", "my task", "", "tâche"])
def test_a_local_task_name_is_letters_digits_and_underscores(name):
    with pytest.raises(ValidationError, match="name"):
        LocalTask(name=name, format="text_rolling", path="t.jsonl")


@pytest.mark.parametrize(("key", "value"), [("format", "csv"), ("path", ""), ("limit", 0)])
def test_a_local_task_needs_a_known_format_a_path_and_a_positive_limit(key, value):
    fields = {"name": "t", "format": "text_rolling", "path": "t.jsonl", key: value}
    with pytest.raises(ValidationError, match=key):
        LocalTask(**fields)


def test_evaluating_at_the_end_only_is_a_fraction_of_one():
    assert EvalConfig(every_fraction=1.0).every_fraction == 1.0


@pytest.mark.parametrize(
    ("key", "value"),
    [("every_fraction", 0), ("every_fraction", 1.5), ("limit", 0), ("batch_size", 0), ("num_fewshot", -1)],
)
def test_out_of_range_values_are_errors(key, value):
    with pytest.raises(ValidationError, match=key):
        EvalConfig(**{key: value})


def test_tasks_must_be_a_list_of_names():
    with pytest.raises(ValidationError, match="tasks"):
        EvalConfig(tasks="val_bpb")
