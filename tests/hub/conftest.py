"""Fixtures for Hub tests: the loopback Hub-API server (tests/hub/hub_server.py), a small trained run shared by
the push tests, and the environment + command line that run `pretrain push` against a given endpoint."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("hub_server", Path(__file__).with_name("hub_server.py"))
hub_server_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_server_module)

FAKE_TOKEN = "hf_FAKEtokenXYZ0123456789abcdefghijkl"
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")


@pytest.fixture()
def hub():
    with hub_server_module.HubServer() as server:
        yield server


@pytest.fixture(scope="session")
def final(make_run, tmp_path_factory) -> Path:
    """A run dir trained for 8 steps (checkpoints every 4): `final/` and `checkpoints/step-*` to push."""
    from pretrain.testing import run_train_stage

    out = tmp_path_factory.mktemp("pushrun") / "run"
    recipe = make_run(out, "eval.enabled=false", "train.tokens=4096", "train.checkpoint.every_steps=4")
    run_train_stage(recipe, resume="never")
    return out


@pytest.fixture()
def hub_env(tmp_path) -> Callable[..., dict]:
    """hub_env(endpoint, token=FAKE_TOKEN) -> environment for a subprocess talking to `endpoint` (token=None:
    no token anywhere, HF_HOME is empty)."""

    def make(endpoint: str, token: str | None = FAKE_TOKEN) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
        env.update(
            {
                "HF_ENDPOINT": endpoint,
                "HF_HUB_OFFLINE": "0",
                "TRANSFORMERS_OFFLINE": "0",
                "HF_HOME": str(tmp_path / "hf_home"),
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_ETAG_TIMEOUT": "5",
                "HF_HUB_DOWNLOAD_TIMEOUT": "10",
                "PRETRAIN_HUB_BACKOFF_S": "0",  # a retried push tries again at once (the retries are counted)
            }
        )
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    return make


def run_pretrain_push(
    env: dict, folder: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pretrain", "push", str(folder), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def push_cli() -> Callable[..., subprocess.CompletedProcess]:
    """push_cli(env, folder, *args) -> the finished `python -m pretrain push folder *args` (output captured)."""
    return run_pretrain_push
