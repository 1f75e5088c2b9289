"""Fuzzing corrupt data files: curation either succeeds or raises a one-line DataError naming the source; it never
crashes with another exception and never leaves a mix/ folder behind on failure."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pretrain.commands.run import run_stage
from pretrain.config import load_recipe
from pretrain.core.errors import DataError
from pretrain.testing import MINIMAL_MODEL, MINIMAL_TRAIN

GOOD_LINE = json.dumps(
    {"text": "A perfectly ordinary sentence about rivers and mountains that is long enough. " * 3}
)


def _recipe(tmp, filename, fmt="auto"):
    raw = {
        "name": "fuzz",
        "output_dir": str(tmp / "out"),
        "data": {
            "sources": [
                {
                    "name": "fuzzed",
                    "type": "local",
                    "paths": [str(tmp / filename)],
                    "weight": 1.0,
                    "format": fmt,
                    "filters": {"preset": "none", "min_chars": 1},
                }
            ],
            "workers": 1,
            "decontaminate": {"enabled": False},
        },
        "model": MINIMAL_MODEL,
        "train": MINIMAL_TRAIN,
        "eval": {"tasks": []},
    }
    (tmp / "r.yaml").write_text(yaml.safe_dump(raw))
    return load_recipe(tmp / "r.yaml")


def _curate_safely(recipe):
    try:
        run_stage(recipe, "curate", force=True)
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg and "fuzzed" in msg, msg
        assert not (recipe.out / "mix").exists()
        return False
    assert (recipe.out / "mix" / "manifest.json").exists()
    return True


def _corrupt(data: bytes, how: str, cut: float, junk: bytes) -> bytes:
    if how == "truncate":
        return data[: int(len(data) * cut)]
    if how == "inject":
        i = int(len(data) * cut)
        return data[:i] + junk + data[i:]
    return junk  # replace


corruptions = st.tuples(
    st.sampled_from(["truncate", "inject", "replace"]), st.floats(0, 1), st.binary(max_size=300)
)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(corruption=corruptions)
def test_corrupt_jsonl(tmp_path_factory, corruption):
    tmp = tmp_path_factory.mktemp("jsonl")
    (tmp / "d.jsonl").write_bytes(_corrupt(("\n".join([GOOD_LINE] * 20) + "\n").encode(), *corruption))
    _curate_safely(_recipe(tmp, "d.jsonl"))


@SETTINGS
@given(corruption=corruptions)
def test_corrupt_gzip(tmp_path_factory, corruption):
    tmp = tmp_path_factory.mktemp("gz")
    (tmp / "d.jsonl.gz").write_bytes(
        _corrupt(gzip.compress(("\n".join([GOOD_LINE] * 50)).encode()), *corruption)
    )
    _curate_safely(_recipe(tmp, "d.jsonl.gz"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=corruptions)
def test_corrupt_parquet(tmp_path_factory, corruption):
    tmp = tmp_path_factory.mktemp("pq")
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [json.loads(GOOD_LINE)["text"]] * 30}), buf)
    (tmp / "d.parquet").write_bytes(_corrupt(buf.getvalue(), *corruption))
    _curate_safely(_recipe(tmp, "d.parquet"))


@SETTINGS
@given(data=st.binary(max_size=2000), long_line=st.integers(0, 200_000))
def test_binary_and_enormous_lines_as_text(tmp_path_factory, data, long_line):
    tmp = tmp_path_factory.mktemp("txt")
    (tmp / "d.txt").write_bytes(data + b"x" * long_line)
    _curate_safely(_recipe(tmp, "d.txt"))


def test_empty_file(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b"")
    assert _curate_safely(_recipe(tmp_path, "d.jsonl")) is False
