"""The full tiny recipe exactly as README quick-start command 1 runs it (minus the install, `pip install -qq`,
which prints only errors)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_tiny_recipe_end_to_end(tmp_path, repo_root, console_problems):
    out = tmp_path / "tiny"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "run", "recipes/tiny/config.yaml", "--output-dir", str(out)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"tiny run: {elapsed:.0f}s")
    print(proc.stdout + proc.stderr)
    assert console_problems(proc.stdout + proc.stderr, out) == []  # <= 80 lines, all ours

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "final")
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    text = tok.decode(model.generate(**tok("import os\n", return_tensors="pt"), max_new_tokens=30)[0])
    assert len(text) > len("import os\n")
    assert (out / "final" / "README.md").read_text().startswith("---")
    assert len(list((out / "evals").glob("step-*.json"))) >= 10
    assert (out / "evals" / "learning_curves.png").exists()
    assert (out / "curation_report.md").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/loss" in r]
    assert val and val[-1]["val/loss"] < val[0]["val/loss"]
    print("final val loss", val[-1]["val/loss"])
