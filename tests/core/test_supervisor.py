"""The supervising parent of a relaunched job: a crash is restarted (the attempt number is passed on), an error
of the input is not (case 1 of issue #31: a data error retried 3 times by torchrun), nor a stop by a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pretrain.core.launcher import launcher_restarts
from pretrain.core.supervisor import FAILURE_REPORT, report_failure, supervise

# a child that appends its attempt number to a file, then behaves as its argument says
CHILD = """
import os, sys, time
from pretrain.core.launcher import launcher_restarts
from pretrain.core.supervisor import report_failure
open(sys.argv[1], "a").write(f"{launcher_restarts()}\\n")
behaviour = sys.argv[2].split(",")[min(launcher_restarts(), len(sys.argv[2].split(",")) - 1)]
if behaviour == "input-error":
    report_failure("data.sources.0: no such file")
    sys.exit(1)
if behaviour == "crash":
    os._exit(17)
if behaviour == "sleep":
    time.sleep(60)
sys.exit(int(behaviour))
"""


def _supervise(tmp_path, behaviours: str, max_restarts: int = 3) -> tuple[int, list[int]]:
    log = tmp_path / "attempts.txt"
    code = supervise([sys.executable, "-c", CHILD, str(log), behaviours], dict(os.environ), max_restarts)
    return code, [int(line) for line in log.read_text().split()]


def test_a_crash_is_restarted_until_it_succeeds(tmp_path):
    before = dict(os.environ)
    assert _supervise(tmp_path, "crash,crash,0") == (0, [0, 1, 2])
    assert dict(os.environ) == before  # the attempt's variables do not stay behind


def test_restarts_are_bounded(tmp_path, capsys):
    assert _supervise(tmp_path, "crash", max_restarts=2) == (17, [0, 1, 2])
    assert "giving up" in capsys.readouterr().err


def test_an_error_of_the_input_is_never_retried(tmp_path, capsys):
    assert _supervise(tmp_path, "input-error,0") == (1, [0])
    assert "not restarting: the job failed on its input" in capsys.readouterr().err


def test_a_stopped_job_is_not_restarted(tmp_path):
    assert _supervise(tmp_path, "130,0") == (130, [0])
    (tmp_path / "attempts.txt").unlink()
    assert _supervise(tmp_path, "143,0") == (143, [0])


def test_sigterm_to_the_supervisor_reaches_the_job(tmp_path):
    log = tmp_path / "attempts.txt"
    code = (
        "import subprocess, sys, os;"
        "from pretrain.core.supervisor import supervise;"
        f"sys.exit(supervise([sys.executable, '-c', {CHILD!r}, {str(log)!r}, 'sleep'], dict(os.environ), 3))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    while not log.exists():
        time.sleep(0.05)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM and time.monotonic() - start < 20
    assert log.read_text().split() == ["0"]


def test_reports_and_attempt_numbers(tmp_path):
    report_failure("ignored", environ={})  # not supervised: nothing to write
    report_failure("bad value", environ={FAILURE_REPORT: str(tmp_path), "RANK": "3"})
    assert (tmp_path / "rank-3.txt").read_text() == "bad value"
    assert launcher_restarts({"PRETRAIN_RESTARTS": "2"}) == 2
    assert launcher_restarts({"TORCHELASTIC_RESTART_COUNT": "1"}) == 1
