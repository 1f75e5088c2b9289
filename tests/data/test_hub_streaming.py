"""Hub sources streamed for real from a loopback Hub API: each task downloads only its shards."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pretrain.testing import MINIMAL_MODEL, MINIMAL_TRAIN

_spec = importlib.util.spec_from_file_location(
    "hub_server", Path(__file__).parents[1] / "hub" / "hub_server.py"
)
hub_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_server)

SHARDS, ROWS = 8, 120
# huggingface_hub also reads TRANSFORMERS_OFFLINE as offline mode
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _shards() -> dict[str, bytes]:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    files = {}
    for shard in range(SHARDS):
        texts = [
            f"shard {shard} row {r}: " + " ".join(rng.choice(words) for _ in range(120)) for r in range(ROWS)
        ]
        buf = io.BytesIO()
        table = pa.table({"text": texts, "url": [f"https://x/{shard}/{r}" for r in range(ROWS)]})
        pq.write_table(table, buf, row_group_size=40)
        files[f"data/train-{shard:05d}-of-{SHARDS:05d}.parquet"] = buf.getvalue()
    files["README.md"] = b"---\nlicense: mit\n---\n# a test dataset\n"
    return files


def _curate(tmp_path: Path, endpoint: str, tasks: int, name: str, **extra_env: str) -> Path:
    recipe = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "data": {
            "sources": [
                {
                    "name": "web",
                    "type": "hub",
                    "path": "org/corpus",
                    "streaming": True,
                    "weight": 1,
                    "filters": {"preset": "none"},
                }
            ],
            "decontaminate": {"enabled": False},
            "executor": {"tasks": tasks},
            "workers": 2,
        },
        "model": MINIMAL_MODEL,
        "train": MINIMAL_TRAIN,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN="hf_fake",
        PYTHONPATH=os.pathsep.join(sys.path),
        **extra_env,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "curate", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if extra_env.get("EXPECT_FAILURE"):
        return proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / name


def test_four_tasks_download_each_shard_once(tmp_path):
    files = _shards()
    repo_bytes = sum(len(v) for v in files.values())
    with hub_server.HubServer() as hub:
        hub.state.add_dataset("org/corpus", files)
        one = _curate(tmp_path, hub.endpoint, 1, "one")
        served_one = hub.state.dataset_bytes_served
        hub.state.dataset_bytes_served = 0
        four = _curate(tmp_path, hub.endpoint, 4, "four")
        served_four = hub.state.dataset_bytes_served
        gets = [p for m, p, _ in hub.state.requests if m == "GET" and p.endswith(".parquet")]
    assert served_four <= 1.2 * repo_bytes, (served_four, repo_bytes)
    assert served_one <= 1.2 * repo_bytes
    report = json.loads((four / "curation_report.json").read_text())
    assert report["sources"][0]["read"]["docs"] == SHARDS * ROWS
    assert report["sources"][0]["read"]["files"] == SHARDS
    from pretrain.data.mixio import iter_documents

    assert list(iter_documents(four / "mix")) == list(
        iter_documents(one / "mix")
    )  # same documents, same order
    assert len(gets) >= SHARDS  # the four-task run fetched every shard itself


@pytest.mark.slow
def test_a_hub_that_never_answers_fails_curation_with_one_line_within_the_timeout(tmp_path):
    """Listing a Hub dataset from a Hub that accepts connections and never answers ends, in one line: each request
    waits at most PRETRAIN_HUB_TIMEOUT_S (huggingface_hub's 60 s retry bound is cut to it), retried a bounded
    number of times by huggingface_hub (5, 1-8 s apart)."""
    import socket
    import time

    with socket.socket() as listener:  # accepts (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        proc = _curate(tmp_path, endpoint, 1, "silent", PRETRAIN_HUB_TIMEOUT_S="1", EXPECT_FAILURE="1")
        took = time.monotonic() - start
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and "source 'web'" in errors[0] and "org/corpus" in errors[0], proc.stderr[-2000:]
    print(errors[0], f"({took:.0f} s)")
    assert took < 180, took
