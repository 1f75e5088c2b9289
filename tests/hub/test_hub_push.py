"""`pretrain push` against a real Hub API on 127.0.0.1: push, branches, re-download + load, failure + retry,
no token leak, and the post-training handoff (peft LoRA on the downloaded base model).
The trained run `final` is a session fixture in conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pretrain.testing import write_recipe_file

FAKE_TOKEN = "hf_FAKEtokenXYZ0123456789abcdefghijkl"


def _env(hub, tmp_path):
    return {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
    }


def _push(env, folder, *args):
    return subprocess.run(
        [sys.executable, "-m", "pretrain", "push", str(folder), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


LOAD = textwrap.dedent("""
    import json, sys, torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    repo, rev, local = sys.argv[1], sys.argv[2], sys.argv[3]
    remote = AutoModelForCausalLM.from_pretrained(repo, revision=rev)
    ref = AutoModelForCausalLM.from_pretrained(local)
    same = all(torch.equal(a, b) for a, b in zip(remote.state_dict().values(), ref.state_dict().values()))
    tok, ref_tok = AutoTokenizer.from_pretrained(repo, revision=rev), AutoTokenizer.from_pretrained(local)
    text = "def f(x):\\n    return x + 1"
    print(json.dumps({"same_weights": same, "same_tokens": tok(text)["input_ids"] == ref_tok(text)["input_ids"]}))
""")


def test_push_branch_and_main_then_load(hub, final, tmp_path):
    env = _env(hub, tmp_path)
    ckpt = sorted((final / "checkpoints").glob("step-*"))[0]
    proc = _push(env, ckpt, "--repo-id", "user/tiny-base", "--revision", ckpt.name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _push(env, final / "final", "--repo-id", "user/tiny-base")
    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub.state.repos["user/tiny-base"]
    assert set(repo["branches"]) == {"main", ckpt.name}
    main_files = set(repo["branches"]["main"]["files"])
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= main_files
    assert not any(f.startswith("trainer_state") or f.endswith((".pt", ".bin")) for f in main_files)
    for rev, local in (("main", final / "final"), (ckpt.name, ckpt)):
        load = subprocess.run(
            [sys.executable, "-c", LOAD, "user/tiny-base", rev, str(local)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert load.returncode == 0, load.stderr[-3000:]
        assert json.loads(load.stdout.strip().splitlines()[-1]) == {"same_weights": True, "same_tokens": True}
    # idempotent: pushing the same folder again adds no commit
    sha = repo["branches"]["main"]["sha"]
    assert _push(env, final / "final", "--repo-id", "user/tiny-base").returncode == 0
    assert hub.state.repos["user/tiny-base"]["branches"]["main"]["sha"] == sha


# ~20 s (huggingface_hub's own commit retries); the default suite keeps the push failure cases of
# test_push_errors.py, this one runs with -m slow
@pytest.mark.slow
def test_failure_mid_push_then_retry(hub, final, tmp_path):
    env = _env(hub, tmp_path)
    hub.state.fail_commits = 10
    proc = _push(env, final / "final", "--repo-id", "user/retry")
    assert proc.returncode == 1
    assert "push of" in proc.stderr and "re-run" in proc.stderr and "Traceback" not in proc.stderr
    hub.state.fail_commits = 0
    proc = _push(env, final / "final", "--repo-id", "user/retry")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model.safetensors" in hub.state.repos["user/retry"]["branches"]["main"]["files"]


def test_token_never_leaks(hub, final, tmp_path):
    env = _env(hub, tmp_path)
    proc = _push(env, final / "final", "--repo-id", "user/leak")
    assert proc.returncode == 0
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    # it is sent as an Authorization header (that is the point), but never in a URL or a stored file
    assert any(h.get("authorization") == f"Bearer {FAKE_TOKEN}" for _, _, h in hub.state.requests)
    assert not any(FAKE_TOKEN in path for _, path, _ in hub.state.requests)
    for content in hub.state.repos["user/leak"]["branches"]["main"]["files"].values():
        assert FAKE_TOKEN.encode() not in content
    for path in final.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path


HANDOFF = textwrap.dedent("""
    import json, sys, torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    repo, out = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(repo)
    base = AutoModelForCausalLM.from_pretrained(repo)
    vocab = base.get_input_embeddings().weight.shape[0]
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\\n{{ m['content'] }}<|im_end|>\\n{% endfor %}")
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False)
    ids = tok(chat, add_special_tokens=False)["input_ids"]
    assert max(ids) < vocab and tok.convert_tokens_to_ids("<|im_start|>") in ids
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    batch = torch.tensor([ids * 4])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward(); opt.step(); opt.zero_grad()
        losses.append(loss.item())
    model.save_pretrained(out)
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(repo), out)
    same = torch.allclose(reloaded(input_ids=batch).logits, model(input_ids=batch).logits, atol=1e-5)
    print(json.dumps({"first": losses[0], "last": losses[-1], "reloaded_same": same,
                      "vocab_unchanged": reloaded.get_input_embeddings().weight.shape[0] == vocab}))
""")


def test_lora_handoff_on_downloaded_model(hub, final, tmp_path):
    env = _env(hub, tmp_path)
    assert _push(env, final / "final", "--repo-id", "user/handoff").returncode == 0
    proc = subprocess.run(
        [sys.executable, "-c", HANDOFF, "user/handoff", str(tmp_path / "adapter")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["last"] < result["first"] and result["reloaded_same"] and result["vocab_unchanged"]


def test_checkpoints_pushed_as_branches_during_training(hub, make_run, tmp_path):
    """`hub.push_checkpoints: true`: every checkpoint becomes a branch in the background; `main` gets the final model."""

    recipe = make_run(
        tmp_path / "run",
        "eval.enabled=false",
        "train.tokens=4096",
        "train.checkpoint.every_steps=4",
        "hub.repo_id=user/live",
        "hub.push_checkpoints=true",
    )
    path = write_recipe_file(recipe, tmp_path / "recipe.yaml")
    env = _env(hub, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "run", str(path), "--output-dir", str(recipe.out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert FAKE_TOKEN not in proc.stderr
    branches = hub.state.repos["user/live"]["branches"]
    assert {"step-0000004", "step-0000008"} <= set(branches)
    assert "model.safetensors" in branches["step-0000008"]["files"]
    assert "README.md" in branches["main"]["files"] and "model.safetensors" in branches["main"]["files"]
    assert "curate: up to date" in proc.stderr  # data stages copied from the small run are current
