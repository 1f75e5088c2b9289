"""Shared fixtures: offline Hub settings, the `../shared/data` corpora (skip when absent), tiny recipes."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from pretrain.core.layout import RunLayout
from pretrain.core.progress import interval_after
from pretrain.testing import SMOKE_SHAPE
from pretrain.train.metrics import read_records, validation_records

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


# A small but real run directory (curate -> tokenizer -> pack on the tiny recipe's builtin data), shared by
# the tokenizer / packing / loader / training / evaluation tests.
SMALL_RUN = [
    *SMOKE_SHAPE,
    "data.mixture.target_bytes=800000",
    "tokenizer.sample_bytes=400000",
    # ~5% of the ~130 documents held out: at the recipe's 3% the val split is ~2 documents, and the standard
    # library of another Python build (Debian's 3.11.2) can hash none of them into it ("the val split is empty")
    "data.val_fraction=0.05",
    "eval.tasks=[val_bpb]",
    "eval.limit=8",
    "train.tokens=12288",
    "train.checkpoint.every_steps=8",
    "train.validation.batches=2",
]


def small_recipe(out: Path, *extra: str):
    from pretrain.config import load_recipe

    return load_recipe(
        REPO / "recipes" / "tiny" / "config.yaml", overrides=[*SMALL_RUN, *extra], output_dir=str(out)
    )


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """(recipe, run dir) with mix/, tokenizer/ and tokens/ built for real."""
    from pretrain.commands.run import run_stage

    out = tmp_path_factory.mktemp("small_run") / "run"
    recipe = small_recipe(out)
    for stage in ("curate", "tokenizer", "pack"):
        run_stage(recipe, stage)
    return recipe, out


@pytest.fixture(scope="session")
def small_run_overrides() -> list[str]:
    """The SMALL_RUN settings as `--set` command-line arguments."""
    return [a for s in SMALL_RUN for a in ("--set", s)]


@pytest.fixture(scope="session")
def make_small_recipe():
    """`make_small_recipe(out, *overrides)` -> the SMALL_RUN recipe writing to `out`."""
    return small_recipe


@pytest.fixture(scope="session")
def make_run(small_run):
    """make_run(out, *overrides) -> recipe: `out` gets copies of the small run's data stages (curate/tokenizer/pack)."""
    import shutil

    _, src = small_run

    def make(out: Path, *overrides: str):
        out.mkdir(parents=True, exist_ok=True)
        for stage in ("mix", "tokenizer", "tokens", "curation_report.json"):
            if (src / stage).is_dir() and not (out / stage).exists():
                shutil.copytree(src / stage, out / stage)
            elif (src / stage).is_file():
                shutil.copy2(src / stage, out / stage)
        return small_recipe(out, *overrides)

    return make


@pytest.fixture()
def fresh_run(make_run, tmp_path):
    """fresh_run(name, *overrides) -> (recipe, out) in this test's tmp_path."""

    def make(name: str, *overrides: str):
        out = tmp_path / name
        return make_run(out, *overrides), out

    return make


# a console line of ours: time, level, a `pretrain.*` logger
OUR_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR) pretrain(\.\w+)*: ")
# README: the whole tiny run prints at most this many lines (tests/slow/test_tiny_recipe.py checks it)
CONSOLE_BUDGET = 80


def _console_problems(text: str, out: Path) -> list[str]:
    """What is wrong with the console output of a `pretrain run` into `out` (non-TTY); [] when it is right.

    Every line is ours; one line per validation pass and per evaluation; progress lines at most one per
    interval (plus the last step's); libraries' progress bars and warnings in `pretrain.log`, not here.
    """
    lines = text.splitlines()
    problems = [f"not ours: {line[:120]!r}" for line in lines if not OUR_LINE.match(line)]
    if len(lines) > CONSOLE_BUDGET:
        problems.append(f"{len(lines)} lines > {CONSOLE_BUDGET}")
    layout = RunLayout(out)
    evals = len(list(layout.evals.glob("step-*.json")))
    validations = len(validation_records(read_records(layout.metrics)))
    if sum(" eval at step " in line for line in lines) != evals:
        problems.append(f"not one console line per evaluation ({evals} evaluations)")
    if sum(" validation at step " in line for line in lines) != validations:
        problems.append(f"not one console line per validation pass ({validations} passes)")
    progress = [line for line in lines if "pretrain.progress: train: " in line]
    times = [datetime.strptime(line[:8], "%H:%M:%S") for line in lines if OUR_LINE.match(line)]
    span = (times[-1] - times[0]).total_seconds() % 86400 if times else 0
    if not progress or len(progress) > _most_progress_lines(span) + 1:  # + the last step's line
        problems.append(f"{len(progress)} training progress lines in {span:.0f} s")
    kept = layout.log_file.read_text(encoding="utf-8") if layout.log_file.exists() else ""
    for noise in ("Running loglikelihood requests", "Generating test split"):  # lm-eval's and datasets' bars
        if noise not in kept:
            problems.append(f"{noise!r} missing from {layout.log_file.name}")
    return problems


def _most_progress_lines(seconds: float) -> int:
    """The most periodic progress lines a stage of `seconds` can print (core/progress.py `interval_after`)."""
    t, lines = 0.0, 0
    while (t := t + interval_after(t)) <= seconds + 1:  # + 1: lines carry whole seconds
        lines += 1
    return lines


@pytest.fixture(scope="session")
def console_problems():
    """console_problems(console_text, run_dir) -> [] when a `pretrain run`'s non-TTY console output is right."""
    return _console_problems
