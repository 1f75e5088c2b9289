"""`pretrain run` end to end on a reduced tiny recipe: every stage really runs, outputs load, caching works.

The full-size tiny recipe (README quick start) runs in tests/slow/test_tiny_recipe.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# small enough for the default suite (~1 min on 2 cores), big enough that every stage does real work
REDUCED = [
    "data.mixture.target_bytes=1500000",
    "tokenizer.vocab_size=1024",
    "tokenizer.sample_bytes=600000",
    "train.tokens=163840",
    "train.micro_batch_size=8",
    "train.global_batch_tokens=4096",
    "eval.limit=16",
    "train.log_every=1",
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pretrain", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def _stage_runs(stderr: str) -> set[str]:
    return {s for s in ("curate", "tokenizer", "pack", "train") if f"{s}: up to date" not in stderr}


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("tiny") / "run"
    recipe = repo_root / "recipes" / "tiny" / "config.yaml"
    sets = [a for s in REDUCED for a in ("--set", s)]
    proc = _run(["run", str(recipe), "--output-dir", str(out), *sets], repo_root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, recipe, sets, proc


def test_outputs_of_every_stage(reduced_run):
    out, *_ = reduced_run
    for rel in (
        "mix/manifest.json",
        "curation_report.json",
        "curation_report.md",
        "tokenizer/tokenizer.json",
        "tokens/manifest.json",
        "final/config.json",
        "final/model.safetensors",
        "final/README.md",
        "metrics.jsonl",
    ):
        assert (out / rel).exists(), rel
    assert list((out / "evals").glob("step-*.json")), "in-loop evals missing"


def test_final_model_loads_and_generates(reduced_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, *_ = reduced_run
    tok = AutoTokenizer.from_pretrained(out / "final")
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert model.config.vocab_size == len(tok)
    inputs = tok("def main(", return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def test_saved_model_is_ready_for_users(reduced_run):
    """Training turns the KV cache off in its forward; the saved model keeps it on (generate is ~3x faster),
    and the tokenizer config carries no options of the call that loaded it."""
    out, *_ = reduced_run
    config = json.loads((out / "final" / "config.json").read_text())
    generation = json.loads((out / "final" / "generation_config.json").read_text())
    tokenizer_config = json.loads((out / "final" / "tokenizer_config.json").read_text())
    assert config.get("use_cache", True) is True and generation.get("use_cache", True) is True
    assert not {"is_local", "local_files_only"} & set(tokenizer_config)


def test_loss_falls(reduced_run):
    out, *_ = reduced_run
    losses = [
        r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    ]
    assert len(losses) >= 3
    assert losses[-1] < losses[0] - 1.0


def test_rerun_skips_current_stages_and_reruns_affected(reduced_run, repo_root):
    out, recipe, sets, _ = reduced_run
    again = _run(["run", str(recipe), "--output-dir", str(out), "--skip-eval", *sets], repo_root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _stage_runs(again.stderr) == set(), again.stderr[-3000:]
    changed = _run(
        ["pack", str(recipe), "--output-dir", str(out), *sets, "--set", "data.val_fraction=0.05"], repo_root
    )
    # pack depends on val_fraction only through its own fingerprint; curate/tokenizer stay current
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "pack: done" in changed.stderr


def test_console_is_short_and_ours_library_output_in_the_run_log(reduced_run, console_problems):
    """README command 1's promise on the reduced run: quiet, readable, every line ours."""
    out, _, _, proc = reduced_run
    assert console_problems(proc.stdout + proc.stderr, out) == [], proc.stderr[-3000:]


def test_a_failed_final_push_is_the_runs_error(tmp_path, repo_root, monkeypatch):
    """`pretrain run` with hub.push_checkpoints exited 0 after its final push failed; now the push's failure is
    one error (exit 1) that says the model is in final/ and how to push it."""
    from huggingface_hub import constants

    from pretrain.commands.run import push_final
    from pretrain.config import load_recipe
    from pretrain.core.errors import PretrainError

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    (final / "model.safetensors").write_bytes(b"\0" * 64)
    recipe = load_recipe(
        repo_root / "recipes" / "tiny" / "config.yaml",
        overrides=["hub.repo_id=user/live", "hub.push_checkpoints=true"],
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(PretrainError) as caught:
        push_final(recipe, final)
    line = str(caught.value)
    assert "\n" not in line
    assert f"run: training finished ({final} holds the model and its card)" in line
    assert "push to user/live@main failed: no Hugging Face token found" in line
    assert f"pretrain push {final} --repo-id user/live" in line
