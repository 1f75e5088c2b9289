"""core/progress.py: periodic progress lines off a terminal, and libraries' output kept out of the console."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from pretrain.core import progress as progress_module
from pretrain.core.progress import Progress, capture_run_output, get_logger, progress


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


@pytest.fixture()
def lines(caplog):
    caplog.set_level(logging.INFO, logger="pretrain")
    get_logger()
    logging.getLogger("pretrain").propagate = True  # caplog listens on the root logger
    yield lambda: [r.getMessage() for r in caplog.records if r.name.startswith("pretrain")]
    logging.getLogger("pretrain").propagate = False


def test_off_a_terminal_one_line_per_interval_with_rate_and_eta(clock, lines):
    bar = Progress("train", total=200, unit="steps", interval_s=30)
    for step in range(1, 201):
        clock.now += 0.5  # 2 steps/s: 100 s in all
        bar.update_to(step, final=step == 200, fields={"loss": f"{10 - step / 40:.2f}"})
    bar.close()
    logged = lines()
    assert len(logged) == 4  # at 30 s, 60 s, 90 s and the final step
    assert logged[0] == "train: 60/200 steps (30%), loss 8.50, 2 steps/s, ETA 1m10s"
    assert logged[-1].startswith("train: 200/200 steps (100%), loss 5.00, 2 steps/s")
    assert "ETA" not in logged[-1]


def test_lines_thin_out_on_long_stages_to_one_per_ten_minutes(clock, lines):
    """30 s apart for the first 5 minutes, then a tenth of the time elapsed, at most 10 minutes apart."""
    bar = Progress("train", total=8 * 3600, unit="steps", interval_s=30)
    times = []
    for step in range(1, 8 * 3600 + 1):  # 8 hours at 1 step/s
        clock.now += 1.0
        before = len(lines())
        bar.update_to(step)
        if len(lines()) > before:
            times.append(step)
    gaps = [b - a for a, b in zip([0, *times], times)]
    assert gaps[:10] == [30] * 10
    assert gaps == sorted(gaps) and max(gaps) == 600 and gaps[-1] == 600
    assert len(times) < 80  # an 8-hour stage: ~75 lines, not 960


def test_iterating_logs_at_the_interval_only(clock, lines):
    def slow(n):
        for i in range(n):
            clock.now += 1.0
            yield i

    assert list(progress(slow(95), desc="pack", total=95, unit="chunk", log_every_s=30)) == list(range(95))
    assert [line.split(" (")[0] for line in lines()] == [
        "pack: 30/95 chunk",
        "pack: 60/95 chunk",
        "pack: 90/95 chunk",
    ]


def test_quiet_on_other_ranks(clock, lines, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    bar = Progress("train", total=10, interval_s=0)
    bar.update_to(10, final=True)
    assert lines() == []


def test_library_output_goes_to_the_log_file_ours_to_both(tmp_path, capfd):
    log_file = tmp_path / "run" / "pretrain.log"
    log = get_logger("pretrain.test")
    with capture_run_output(log_file):
        log.info("our line")
        os.write(2, b"Running loglikelihood requests: 100%|##########| 16/16\n")  # a C-level / tqdm write
        print("[transformers] Token indices sequence length is longer", file=sys.stderr)
        warnings.warn("a library warning", UserWarning, stacklevel=1)
        logging.getLogger("datasets").warning("Generating test split")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('worker noise\\n')"], check=True)
    log.info("after the capture")
    err = capfd.readouterr().err
    assert "our line" in err and "after the capture" in err
    for noise in (
        "Running loglikelihood",
        "Token indices",
        "a library warning",
        "Generating",
        "worker noise",
    ):
        assert noise not in err, noise
    kept = log_file.read_text()
    for text in (
        "our line",
        "Running loglikelihood",
        "Token indices",
        "a library warning",
        "Generating test split",
        "worker noise",
    ):
        assert text in kept, text
    assert "after the capture" not in kept


def test_capture_ends_when_the_block_raises(tmp_path, capfd):
    with pytest.raises(RuntimeError), capture_run_output(tmp_path / "pretrain.log"):
        raise RuntimeError("boom")
    os.write(2, b"visible again\n")
    assert "visible again" in capfd.readouterr().err


def test_on_a_terminal_a_bar_with_our_lines_above_it(monkeypatch, capfd):
    import io

    screen = io.StringIO()
    monkeypatch.setattr(progress_module, "_console", screen)
    monkeypatch.setattr(progress_module, "interactive", lambda: True)
    bar = Progress("train", total=4, unit="steps")
    bar.update_to(2, fields={"loss": "6.19"})
    get_logger("pretrain.test").info("validation at step 2")
    bar.update_to(4)
    bar.close()
    drawn = screen.getvalue()
    assert "train: 100%" in drawn and "4/4" in drawn and "loss 6.19" in drawn
    assert "validation at step 2\n" in drawn
    assert "train:" not in capfd.readouterr().err  # nothing beside the console


def test_a_native_crash_prints_its_stack_on_the_console_while_output_is_captured(tmp_path):
    """Case 8 of issue #31: a SIGSEGV stopped the console dead; its trace went only to pretrain.log."""
    import subprocess
    import sys

    code = (
        "import ctypes, sys\n"
        "from pretrain.core.progress import capture_run_output\n"
        f"with capture_run_output({str(tmp_path / 'pretrain.log')!r}):\n"
        "    ctypes.string_at(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert (
        "Fatal Python error: Segmentation fault" in proc.stderr and 'File "<string>", line 4' in proc.stderr
    )
