"""GPU tests: every test under tests/gpu is marked `gpu` and skipped when torch sees no CUDA device.

    pytest -m gpu tests/gpu                                  # on a GPU machine (bench/gpu_check.sh runs this)
    PRETRAIN_GPU_TESTS_ON_CPU=1 pytest -m gpu tests/gpu      # rehearse the tests' own code on the CPU

The shared fixtures of tests/conftest.py (`small_run`, `make_run`, `fresh_run`, `make_small_recipe`) build the
small data stages on the CPU; the tests then train on `device`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ON_CPU = os.environ.get("PRETRAIN_GPU_TESTS_ON_CPU") == "1"  # rehearsal: run the GPU tests on the CPU


def cuda_ready() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip = None
    if not (cuda_ready() or ON_CPU):
        skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gpu)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if cuda_ready() else "cpu")


def reset_accelerate() -> None:
    """accelerate keeps one process-wide state: forget it so the next test may pick another mixed precision."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    reset_accelerate()
    yield
    reset_accelerate()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
