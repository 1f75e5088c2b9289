"""Fuzzing the artefacts a run reads back: a checkpoint folder with one file cut, grown, overwritten, removed or
a bit flipped, its COMPLETE marker garbled is reported by `damage` (one line per file, never an exception, within a per-case
timeout), so resume passes over it (tests/train/test_faults.py) instead of loading it."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pretrain.train.checkpoint import (
    COMPLETE,
    RECIPE_YAML,
    STATE_JSON,
    TRAINER_STATE,
    WEIGHTS,
    damage,
    rank_state_name,
    seal_checkpoint,
)

PER_CASE_S = 10
FILES = [WEIGHTS, "config.json", f"{TRAINER_STATE}/{STATE_JSON}", f"{TRAINER_STATE}/{RECIPE_YAML}"]


@contextmanager
def per_case_timeout(seconds: int = PER_CASE_S):
    """A case that hangs fails (SIGALRM) instead of holding the suite."""

    def expired(signum, frame):
        raise TimeoutError(f"case still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _checkpoint(folder: Path) -> Path:
    (folder / TRAINER_STATE).mkdir(parents=True)
    (folder / WEIGHTS).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 4)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / TRAINER_STATE / STATE_JSON).write_text(json.dumps({"step": 8, "world_size": 1}))
    (folder / TRAINER_STATE / RECIPE_YAML).write_text("train:\n  checkpoint:\n    save_optimizer: false\n")
    (folder / TRAINER_STATE / rank_state_name(0)).write_text("{}")
    seal_checkpoint(folder)
    return folder


corruptions = st.tuples(
    st.sampled_from([*FILES, f"{TRAINER_STATE}/{COMPLETE}"]),
    st.sampled_from(["truncate", "inject", "replace", "flip", "delete"]),
    st.floats(0, 1),
    st.binary(max_size=64),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=corruptions)
def test_a_damaged_checkpoint_is_reported_never_loaded_or_raised(tmp_path_factory, corruption):
    rel, how, where, junk = corruption
    folder = _checkpoint(tmp_path_factory.mktemp("ckpt") / "step-0000008")
    path = folder / rel
    before = path.read_bytes()
    if how == "delete":
        path.unlink()
    else:
        cut = int(len(before) * where)
        at = min(cut, len(before) - 1)  # flip: one bit, same size (only the hash can tell)
        flipped = before[:at] + bytes([before[at] ^ 0x20]) + before[at + 1 :]
        after = {
            "truncate": before[:cut],
            "inject": before[:cut] + junk + before[cut:],
            "replace": junk,
            "flip": flipped,
        }[how]
        path.write_bytes(after)
    with per_case_timeout():
        problems = damage(folder)
    assert all(isinstance(line, str) and "\n" not in line for line in problems), problems
    changed = not path.exists() or path.read_bytes() != before
    if rel.endswith(COMPLETE):
        # a marker that no longer reads falls back to the files every checkpoint has: all still here
        if not path.exists():
            assert problems == [f"{TRAINER_STATE}/{COMPLETE}: missing (the write never finished)"]
        return
    assert bool(problems) == changed, (rel, how, problems)
    if changed:
        assert any(line.startswith(rel) for line in problems), (rel, problems)
