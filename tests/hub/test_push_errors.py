"""What users hit first: `pretrain push` with no token, a rejected token, or no network. Each is one `error:`
line naming the cause and what to do, exit 1, no traceback, the model left on disk; the token is checked
before anything is created. The in-training `CheckpointPusher` logs one line per failure and never raises."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from pretrain.hub.push import push_folder
from pretrain.hub.pusher import CheckpointPusher
from pretrain.testing import write_recipe_file
from pretrain.train.checkpoint import upload_filter

BAD_TOKEN = "hf_REVOKEDtoken0000000000000000000000"


@pytest.fixture()
def model_folder(tmp_path) -> Path:
    """A folder `pretrain push` accepts (config + weights); no run around it, so no card is rendered."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture()
def closed_port_endpoint() -> str:
    """http://127.0.0.1:PORT where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _assert_one_clean_error(proc, *needles: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def test_no_network_is_one_error_line(model_folder, closed_port_endpoint, hub_env, push_cli):
    proc = push_cli(hub_env(closed_port_endpoint), model_folder, "--repo-id", "user/offline", timeout=120)
    _assert_one_clean_error(
        proc,
        f"cannot reach the Hub at {closed_port_endpoint}",
        "connection refused",
        "HF_ENDPOINT",
        f"the model stays in {model_folder}",
        "re-run",
    )
    assert (model_folder / "model.safetensors").exists()


def test_unresolvable_host_is_a_dns_error(model_folder, hub_env, push_cli):
    proc = push_cli(hub_env("http://hub.invalid"), model_folder, "--repo-id", "user/dns", timeout=120)
    _assert_one_clean_error(proc, "cannot reach the Hub at http://hub.invalid", "DNS lookup failed")


def test_silent_hub_times_out(model_folder, hub_env, push_cli):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        env = {**hub_env(endpoint), "PRETRAIN_HUB_TIMEOUT_S": "1"}
        proc = push_cli(env, model_folder, "--repo-id", "user/slow", timeout=60)
    _assert_one_clean_error(
        proc,
        f"cannot reach the Hub at {endpoint}",
        "timed out: no answer within 1 s, PRETRAIN_HUB_TIMEOUT_S",
        "3 attempts",
    )


@pytest.mark.slow  # the default suite has the pusher's twin below, in process
def test_a_commit_the_hub_accepts_and_never_answers_ends_within_the_stated_timeout(
    model_folder, hub, hub_env, push_cli
):
    """It used to wait for ever (killed at 240 s): each request now waits PRETRAIN_HUB_TIMEOUT_S, 3 attempts."""
    hub.state.hang_commits = True
    env = {**hub_env(hub.endpoint), "PRETRAIN_HUB_TIMEOUT_S": "1"}
    start = time.monotonic()
    proc = push_cli(env, model_folder, "--repo-id", "user/hang", timeout=120)
    took = time.monotonic() - start
    _assert_one_clean_error(
        proc, "timed out: no answer within 1 s, PRETRAIN_HUB_TIMEOUT_S", "3 attempts", "re-run"
    )
    commits = [path for method, path, _ in hub.state.requests if path.endswith("/commit/main")]
    assert len(commits) == 3, commits
    assert took < 60, took  # 3 x 1 s of waiting, plus the command's start on a loaded machine


def test_a_server_error_on_the_token_check_is_retried(model_folder, hub, monkeypatch):
    """A 500 from whoami failed the push at once, though the message said "after retries"."""
    _in_process_hub(monkeypatch, hub.endpoint)
    hub.state.fail_whoami = 1
    push_folder(model_folder, "user/flaky", skip=upload_filter(), backoff_s=0)
    assert "user/flaky" in hub.state.repos
    checks = [path for _, path, _ in hub.state.requests if path == "/api/whoami-v2"]
    assert len(checks) == 2, checks


def test_offline_mode_is_named(model_folder, hub, hub_env, push_cli):
    env = {**hub_env(hub.endpoint), "HF_HUB_OFFLINE": "1"}
    proc = push_cli(env, model_folder, "--repo-id", "user/off")
    _assert_one_clean_error(proc, "HF_HUB_OFFLINE")
    assert hub.state.requests == []


def test_no_token_is_checked_before_any_request(model_folder, hub, hub_env, push_cli):
    proc = push_cli(hub_env(hub.endpoint, token=None), model_folder, "--repo-id", "user/anon")
    _assert_one_clean_error(proc, "no Hugging Face token found", "hf auth login", "HF_TOKEN")
    assert hub.state.requests == [] and hub.state.repos == {}


def test_rejected_token_is_named_and_nothing_is_created(model_folder, hub, hub_env, push_cli):
    hub.state.rejected_tokens.add(BAD_TOKEN)
    proc = push_cli(hub_env(hub.endpoint, token=BAD_TOKEN), model_folder, "--repo-id", "user/revoked")
    line = _assert_one_clean_error(proc, "rejected the token from HF_TOKEN", "HTTP 401", "hf auth login")
    assert hub.state.repos == {}  # checked before create_repo
    paths = [path for _, path, _ in hub.state.requests]
    assert "/api/whoami-v2" in paths and not any(p.startswith(("/api/repos", "/api/models")) for p in paths)
    assert BAD_TOKEN not in proc.stdout + proc.stderr and hub.endpoint in line


def test_read_only_token_is_refused_before_create(model_folder, hub, hub_env, push_cli):
    hub.state.token_role = "read"
    proc = push_cli(hub_env(hub.endpoint), model_folder, "--repo-id", "user/readonly")
    _assert_one_clean_error(proc, "read-only", "write token")
    assert hub.state.repos == {}


def test_server_error_names_endpoint_and_status(model_folder, hub, hub_env, push_cli):
    hub.state.fail_commits = 100
    proc = push_cli(hub_env(hub.endpoint), model_folder, "--repo-id", "user/broken")
    _assert_one_clean_error(
        proc,
        f"the Hub at {hub.endpoint} answered HTTP 500 (a server error, 3 attempts)",
        "try again later",
        f"re-run `pretrain push {model_folder} --repo-id user/broken` to retry",
    )


# ---------------------------------------------------------------- the in-training pusher


def _in_process_hub(monkeypatch, endpoint: str) -> None:
    """In this process, huggingface_hub talks to `endpoint` (its constants are read at import time), as
    `hub_env` sets it up for a subprocess."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "hf_FAKEtokenXYZ0123456789abcdefghijkl")


@pytest.fixture()
def hub_unreachable(monkeypatch, closed_port_endpoint):
    """In this process, huggingface_hub talks to a closed port."""
    _in_process_hub(monkeypatch, closed_port_endpoint)
    return closed_port_endpoint


def _pusher(retries: int = 2) -> CheckpointPusher:
    return CheckpointPusher("user/live", True, upload_filter(), retries=retries, backoff_s=0.0)


def _hub_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pretrain.hub" and r.levelno >= logging.ERROR]


def test_pusher_survives_an_unreachable_hub(model_folder, hub_unreachable, caplog):
    caplog.set_level(logging.INFO, logger="pretrain.hub")
    pusher = _pusher()
    pusher.submit(model_folder, "step-0000004")  # returns at once: the upload runs in the background
    pusher.submit(model_folder, "step-0000008")
    pusher.close(timeout=60)
    assert pusher.failures == ["step-0000004", "step-0000008"]
    errors = _hub_errors(caplog)
    assert len(errors) == 2, errors  # one line per checkpoint, after its retries
    assert f"cannot reach the Hub at {hub_unreachable}" in errors[0] and "training continues" in errors[0]
    assert f"pretrain push {model_folder} --repo-id user/live --revision step-0000004" in errors[0]
    assert all("\n" not in e for e in errors)
    assert (model_folder / "model.safetensors").exists()


def test_pusher_stops_after_a_token_error(model_folder, hub_unreachable, monkeypatch, caplog):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(model_folder.parent / "hf_home"))  # no saved token either
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(model_folder.parent / "hf_home" / "token"))
    caplog.set_level(logging.INFO, logger="pretrain.hub")
    pusher = _pusher(retries=3)
    for step in (4, 8, 12):
        pusher.submit(model_folder, f"step-{step:07d}")
    pusher.close(timeout=60)
    assert sorted(pusher.failures) == ["step-0000004", "step-0000008", "step-0000012"]
    errors = _hub_errors(caplog)
    assert len(errors) == 1, errors  # said once; retrying cannot fix a missing token
    assert "checkpoint uploads are off" in errors[0] and "no Hugging Face token found" in errors[0]


def test_pusher_survives_an_unexpected_error(model_folder, monkeypatch, caplog):
    """Not a HubPushError (a library bug, a full disk): retried, then one line; training is never interrupted."""
    import pretrain.hub.pusher as pusher_module

    def broken_push(*args, **kwargs):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(pusher_module, "push_folder", broken_push)
    caplog.set_level(logging.INFO, logger="pretrain.hub")
    pusher = _pusher()
    pusher.submit(model_folder, "step-0000004")
    pusher.close(timeout=60)
    assert pusher.failures == ["step-0000004"]
    errors = _hub_errors(caplog)
    assert len(errors) == 1 and "RuntimeError: something unforeseen" in errors[0], errors


def test_training_run_survives_hub_errors(hub, make_run, hub_env, tmp_path):
    """`pretrain run` with `hub.push_checkpoints` and no token: training finishes (final/ written), the token
    problem is said once by the pusher and once for the final push, no traceback is printed, and the run exits 1
    because its final push failed (it exited 0, so `pretrain run ... && next-step` went on)."""
    import subprocess
    import sys

    recipe = make_run(
        tmp_path / "run",
        "eval.enabled=false",
        "train.tokens=4096",
        "train.checkpoint.every_steps=4",
        "hub.repo_id=user/live",
        "hub.push_checkpoints=true",
    )
    path = write_recipe_file(recipe, tmp_path / "recipe.yaml")
    proc = subprocess.run(
        # preflight refuses this run before any work (tests/commands/test_preflight.py); --no-preflight reaches
        # the path a token that expires mid-run takes
        [
            sys.executable,
            "-m",
            "pretrain",
            "run",
            str(path),
            "--output-dir",
            str(recipe.out),
            "--no-preflight",
        ],
        env=hub_env(hub.endpoint, token=None),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (recipe.out / "final" / "model.safetensors").exists()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "run: training finished" in errors[0], proc.stderr[-3000:]
    assert "push to user/live@main failed: no Hugging Face token found" in errors[0]
    off = [line for line in proc.stderr.splitlines() if "checkpoint uploads are off" in line]
    assert len(off) == 1 and "no Hugging Face token found" in off[0], proc.stderr[-3000:]
    assert hub.state.requests == [] and hub.state.repos == {}


def test_the_pusher_gives_up_on_a_hub_that_never_answers_and_close_names_what_is_left(
    model_folder, hub, monkeypatch, caplog
):
    """The background pusher used to wait for ever too; now its push times out (one line), and close() is bounded."""
    _in_process_hub(monkeypatch, hub.endpoint)
    monkeypatch.setenv("PRETRAIN_HUB_TIMEOUT_S", "1")
    hub.state.hang_commits = True
    caplog.set_level(logging.INFO, logger="pretrain.hub")
    pusher = _pusher(retries=1)
    pusher.submit(model_folder, "step-0000004")
    start = time.monotonic()
    pusher.close(timeout=120)
    took = time.monotonic() - start
    assert took < 90, took  # whoami, create, preupload, then the commit's 1 s (on a loaded machine)
    assert pusher.failures == ["step-0000004"]
    (error,) = _hub_errors(caplog)
    assert (
        "timed out: no answer within 1 s, PRETRAIN_HUB_TIMEOUT_S" in error and "training continues" in error
    )
