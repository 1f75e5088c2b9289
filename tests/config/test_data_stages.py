"""train.data_stages: each bad stage list is one `file: key: problem` line naming the key, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pretrain.config import load_recipe
from pretrain.core.errors import RecipeError

GOOD = [
    {"name": "main", "share": 0.7, "weights": {"stdlib_code": 6, "stdlib_docs": 3, "pydoc_topics": 1}},
    {"name": "anneal", "share": 0.3, "weights": {"stdlib_docs": 1, "pydoc_topics": 1}},
]


def _load(tiny_recipe_path: Path, tmp_path: Path, stages: list[dict], **train) -> object:
    raw = yaml.safe_load(tiny_recipe_path.read_text())
    raw["accelerate_config"] = str((tiny_recipe_path.parent / raw["accelerate_config"]).resolve())
    raw["train"]["data_stages"] = stages
    raw["train"].update(train)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path), path


def _problems(tiny_recipe_path, tmp_path, stages, **train) -> list[str]:
    with pytest.raises(RecipeError) as info:
        _load(tiny_recipe_path, tmp_path, stages, **train)
    return info.value.problems


def test_a_good_stage_list_validates_and_splits_the_steps(tiny_recipe_path, tmp_path):
    recipe, _ = _load(tiny_recipe_path, tmp_path, GOOD)
    assert recipe.train.stage_end_steps(200) == [140, 200]
    assert recipe.train.data_stages[1].weight_shares() == {"stdlib_docs": 0.5, "pydoc_topics": 0.5}


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (lambda s: s[1]["weights"].update(books=1), "train.data_stages.1.weights.books", "no source named"),
        (
            lambda s: s[0]["weights"].update(stdlib_code=0),
            "train.data_stages.0.weights.stdlib_code",
            "greater than 0",
        ),
        (
            lambda s: s[0]["weights"].update(stdlib_code=-1),
            "train.data_stages.0.weights.stdlib_code",
            "greater than 0",
        ),
        (lambda s: s[1].update(share=0.2), "train.data_stages", "add up to 0.9, not 1"),
        (lambda s: s[1].update(tokens=1000), "train.data_stages.1", "exactly one of share"),
        (lambda s: s[1].pop("share"), "train.data_stages.1", "exactly one of share"),
        (lambda s: s[1].update(weights={}), "train.data_stages.1.weights", "at least 1"),
        (
            lambda s: s[0].update(share=0.999) or s[1].update(share=0.001),
            "train.data_stages.1",
            "no optimizer step",
        ),
    ],
)
def test_bad_stages_name_the_key(tiny_recipe_path, tmp_path, change, key, words):
    stages = [dict(s, weights=dict(s["weights"])) for s in GOOD]
    change(stages)
    problems = _problems(tiny_recipe_path, tmp_path, stages)
    assert len(problems) == 1, problems
    assert problems[0].split(": ")[1] == key, problems
    assert words in problems[0]


def test_token_counts_must_match_the_run(tiny_recipe_path, tmp_path):
    stages = [
        {"tokens": 1_000_000, "weights": {"stdlib_code": 1}},
        {"tokens": 638_400, "weights": {"stdlib_docs": 1}},
    ]
    recipe, _ = _load(tiny_recipe_path, tmp_path, stages)  # train.tokens is 1,638,400
    assert recipe.train.stage_end_steps(200) == [122, 200]
    stages[1]["tokens"] = 600_000
    (problem,) = _problems(tiny_recipe_path, tmp_path, stages)
    assert (
        "train.data_stages: the stages' tokens add up to 1,600,000, but the run trains 1,638,400" in problem
    )
    stages[1] = {"share": 0.5, "weights": {"stdlib_docs": 1}}
    (problem,) = _problems(tiny_recipe_path, tmp_path, stages)
    assert ": train.data_stages.0.tokens: " in problem and "every stage a share" in problem
