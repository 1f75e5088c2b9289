"""Fuzzing: malformed recipes always give `file: dotted.key: problem` lines naming the key — never a traceback.

Each example takes the valid tiny recipe and applies one mutation (unknown key, wrong type, zero or
negative size, contradictory batch, missing file, deleted required key); the error must name the
mutated key. A sample also goes through the CLI to check exit code 1 and no traceback.
"""

from __future__ import annotations

import copy
import io
import re
import signal
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pretrain.cli import main
from pretrain.config import load_recipe
from pretrain.core.errors import RecipeError

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "config.yaml"
LINE = re.compile(r"^(?P<file>[^:]+): (?P<key>[^:]+): (?P<problem>.+)$")

SIZE_KEYS = [
    "train.seq_len",
    "train.micro_batch_size",
    "train.global_batch_tokens",
    "train.tokens",
    "train.log_every",
    "train.optimizer.lr",
    "tokenizer.vocab_size",
    "tokenizer.sample_bytes",
    "data.mixture.target_bytes",
    "data.sources.0.weight",
    "data.sources.1.weight",
    "eval.limit",
    "eval.batch_size",
    "model.hidden_size",
    "model.num_hidden_layers",
]
REQUIRED_KEYS = ["name", "data", "model", "train", "data.sources", "model.model_type", "train.seq_len"]


def _base() -> dict:
    raw = yaml.safe_load(TINY.read_text())
    raw["accelerate_config"] = str((TINY.parent / raw["accelerate_config"]).resolve())
    return raw


BASE = _base()


def _leaves(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(node, list) and node and isinstance(node[0], dict):
        for i, v in enumerate(node):
            yield from _leaves(v, (*prefix, i))
    else:
        yield prefix, node


def _sections(node, prefix=()):
    if isinstance(node, dict):
        yield prefix
        for k, v in node.items():
            yield from _sections(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _sections(v, (*prefix, i))


LEAVES = [(p, v) for p, v in _leaves(BASE) if p[-1] not in ("accelerate_config",)]
SECTIONS = [p for p in _sections(BASE) if "model" not in p]


def _set(raw, path, value):
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _wrong_value(value):
    if isinstance(value, bool):
        return st.sampled_from(["maybe", 3, [True]])
    if isinstance(value, int | float):
        return st.sampled_from(["lots", [1, 2], {"a": 1}, True])
    if isinstance(value, str):
        return st.sampled_from([123, [value], {"x": value}, None])
    if isinstance(value, list):
        return st.sampled_from(["not-a-list", 5])
    return st.just("x")


@st.composite
def malformed(draw):
    raw = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["unknown", "type", "size", "batch", "missing_file", "delete"]))
    if kind == "unknown":
        path = draw(st.sampled_from(SECTIONS))
        key = draw(st.from_regex(r"[a-z]{3,10}_typo", fullmatch=True))
        node = raw
        for k in path:
            node = node[k]
        node[key] = draw(st.integers(0, 5))
        return raw, ".".join(map(str, (*path, key)))
    if kind == "type":
        path, value = draw(st.sampled_from(LEAVES))
        _set(raw, path, draw(_wrong_value(value)))
        return raw, ".".join(map(str, path))
    if kind == "size":
        dotted = draw(st.sampled_from(SIZE_KEYS))
        path = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        _set(raw, path, draw(st.sampled_from([0, -1, -1000])))
        return raw, dotted
    if kind == "batch":
        per_micro = raw["train"]["micro_batch_size"] * raw["train"]["seq_len"]
        k = draw(st.integers(1, 8))
        r = draw(st.integers(1, per_micro - 1))
        raw["train"]["global_batch_tokens"] = k * per_micro + r
        return raw, "train"
    if kind == "missing_file":
        which = draw(st.sampled_from(["source", "tokenizer", "task"]))
        name = draw(st.from_regex(r"[a-z]{4,8}", fullmatch=True))
        if which == "source":
            raw["data"]["sources"].append(
                {"name": "extra", "type": "local", "paths": [f"/nonexistent/{name}.txt"], "weight": 1.0}
            )
            return raw, f"data.sources.{len(raw['data']['sources']) - 1}.paths.0"
        if which == "tokenizer":
            raw["tokenizer"]["pretrained"] = f"/nonexistent/{name}"
            return raw, "tokenizer.pretrained"
        raw["eval"]["local_tasks"] = [
            {"name": "t", "format": "mc_query_choices", "path": f"/nonexistent/{name}.jsonl"}
        ]
        return raw, "eval.local_tasks.0.path"
    dotted = draw(st.sampled_from(REQUIRED_KEYS))
    node = raw
    parts = dotted.split(".")
    for k in parts[:-1]:
        node = node[k]
    del node[parts[-1]]
    return raw, dotted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed())
def test_malformed_recipes_name_the_key(case, tmp_path_factory):
    raw, key = case
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    problems = info.value.problems
    assert problems
    for line in problems:
        m = LINE.match(line)
        assert m, line
        assert m["file"] == str(path)
    assert any(
        LINE.match(line)["key"].startswith(key) or key.startswith(LINE.match(line)["key"])
        for line in problems
    ), (
        key,
        problems,
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed())
def test_cli_exit_code_and_no_traceback(case, tmp_path_factory):
    raw, key = case
    path = tmp_path_factory.mktemp("fuzzcli") / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["validate", str(path)])
    assert code == 1
    assert "Traceback" not in err.getvalue()
    assert all(line.startswith("error: ") or "invalid" in line for line in err.getvalue().splitlines())


# ------------------------------------------------------------ malformed text: what a YAML dump cannot produce

TINY_TEXT = TINY.read_text().replace(
    "accelerate_config: ../../accelerate_configs/cpu.yaml", f"accelerate_config: {BASE['accelerate_config']}"
)
TEXT_LINES = TINY_TEXT.splitlines(keepends=True)
KEY_LINES = [i for i, line in enumerate(TEXT_LINES) if re.match(r"^\s*[a-z_]+:", line)]
FLOAT_LEAVES = [p for p, v in LEAVES if isinstance(v, float)]
INT_LEAVES = [p for p, v in LEAVES if isinstance(v, int) and not isinstance(v, bool)]
PER_CASE_S = 10


@contextmanager
def per_case_timeout(seconds: int = PER_CASE_S):
    """A case that hangs fails (SIGALRM) instead of holding the suite."""

    def expired(signum, frame):
        raise TimeoutError(f"case still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def malformed_text(draw):
    """(recipe text, what the one error must say, or None when the recipe may also be valid)."""
    kind = draw(st.sampled_from(["duplicate", "nonfinite", "huge", "deep", "garbage"]))
    if kind == "duplicate":  # a key line given twice in its mapping (a section: its whole block again)
        i = draw(st.sampled_from(KEY_LINES))
        lines = list(TEXT_LINES)
        return "".join(
            [*lines[: i + 1], lines[i].split("#")[0].rstrip() + "\n", *lines[i + 1 :]]
        ), "duplicate key"
    raw = copy.deepcopy(BASE)
    if kind == "nonfinite":
        path = draw(st.sampled_from(FLOAT_LEAVES))
        _set(raw, path, draw(st.sampled_from([float("inf"), float("-inf"), float("nan")])))
        return yaml.safe_dump(raw), ".".join(map(str, path))
    if kind == "huge":  # accepted or refused, but never a traceback or a hang
        path = draw(st.sampled_from(INT_LEAVES))
        _set(raw, path, draw(st.sampled_from([2**70, -(2**70), 10**30])))
        return yaml.safe_dump(raw), None
    if kind == "deep":
        depth = draw(st.integers(200, 600))
        return TINY_TEXT + "description: " + "[" * depth + "]" * depth + "\n", None
    cut = draw(st.integers(0, len(TINY_TEXT)))
    junk = draw(st.text(alphabet=st.sampled_from(list(":{}[]-&*!|>'\"%@` \n\t#,?x1")), max_size=40))
    return TINY_TEXT[:cut] + junk + TINY_TEXT[cut:], None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed_text())
def test_malformed_recipe_text_is_an_error_line_or_a_recipe(case, tmp_path_factory):
    """Duplicate keys, non-finite numbers, 2**70, deep nesting and stray YAML syntax: a RecipeError of `file: ...`
    lines (naming the key where one is known) or a valid recipe; never another exception, never a hang."""
    text, expected = case
    path = tmp_path_factory.mktemp("fuzztext") / "recipe.yaml"
    path.write_text(text)
    try:
        with per_case_timeout():
            load_recipe(path)
    except RecipeError as exc:
        assert exc.problems and all(line.startswith(f"{path}:") and "\n" not in line for line in exc.problems)
        assert expected is None or any(expected in line for line in exc.problems), (expected, exc.problems)
        return
    assert expected is None, f"accepted: {expected}"
