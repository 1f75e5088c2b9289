"""Shared fixtures: offline Hub settings, the `../shared/data` corpora (skip when absent), tiny recipes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PRETRAIN_SHARED_DATA", REPO.parent / "shared" / "data"))

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PRETRAIN_NO_TQDM", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests that need real corpora or benchmark files skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA} (real corpora / benchmark files); absent here")
    return SHARED_DATA


@pytest.fixture()
def tiny_recipe_path(repo_root: Path) -> Path:
    return repo_root / "recipes" / "tiny" / "config.yaml"
