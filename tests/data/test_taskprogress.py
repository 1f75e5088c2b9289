"""Progress of data tasks: each task's line (docs, bytes, MB/s, ETA) and record at a steady interval, and a
thread summing the tasks' records of one stage into a total line."""

from __future__ import annotations

import json
import logging
import time

import pytest

from pretrain.data import taskprogress
from pretrain.data.taskprogress import TaskProgress, TotalProgress


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def lines():
    """The messages of the `pretrain.data` logger during the test."""
    handler = Lines()
    logger = logging.getLogger("pretrain.data")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture()
def every(monkeypatch):
    """every(seconds): set the interval between progress lines."""
    return lambda seconds: monkeypatch.setattr(taskprogress, "PROGRESS_EVERY_S", seconds)


def test_a_line_gives_documents_bytes_and_rate():
    assert (
        taskprogress._line("curate t0", 12345, 3_000_000, 2.0, None)
        == "curate t0: 12,345 docs, 3MB (1.50 MB/s)"
    )


def test_a_line_gives_the_time_left_when_the_total_is_known():
    line = taskprogress._line("pack", 10, 1_000_000, 1.0, 61_000_000)
    assert line == "pack: 10 docs, 1MB (1.00 MB/s, ETA 1m00s)"


def test_a_finished_task_has_no_time_left():
    assert "ETA" not in taskprogress._line("pack", 10, 5_000_000, 1.0, 5_000_000)
    assert "ETA" not in taskprogress._line("pack", 0, 0, 1.0, 5_000_000)  # no rate yet


def test_updates_add_up(every):
    every(3600)
    progress = TaskProgress("curate t0")
    progress.update(3, 300)
    progress.update(2, 200)
    assert (progress.docs, progress.bytes) == (5, 500)


def test_nothing_is_logged_or_recorded_before_the_interval(every, lines, tmp_path):
    every(3600)
    record = tmp_path / "progress" / "curate-t0.json"
    progress = TaskProgress("curate t0", record=record)
    progress.update(3, 300)
    assert lines == [] and not record.exists()


def test_after_the_interval_an_update_logs_and_records_the_counts(every, lines, tmp_path):
    every(0)
    record = tmp_path / "curate-t0.json"
    progress = TaskProgress("curate t0", total_bytes=1000, record=record)
    progress.update(3, 300)
    assert len(lines) == 1 and lines[0].startswith("curate t0: 3 docs, 300B (")
    assert json.loads(record.read_text()) == {"docs": 3, "bytes": 300, "total_bytes": 1000, "done": False}


def test_done_logs_and_records_the_task_as_finished(every, lines, tmp_path):
    every(3600)
    record = tmp_path / "curate-t0.json"
    progress = TaskProgress("curate t0", record=record)
    progress.update(4, 400)
    progress.done()
    assert len(lines) == 1 and lines[0].startswith("curate t0: 4 docs, 400B")
    assert json.loads(record.read_text()) == {"docs": 4, "bytes": 400, "total_bytes": None, "done": True}


def test_a_task_without_a_record_only_logs(every, lines, tmp_path):
    every(0)
    TaskProgress("curate t0").done()
    assert len(lines) == 1 and list(tmp_path.iterdir()) == []


def write(folder, name, **state):
    (folder / name).write_text(json.dumps(state))


def test_the_total_line_sums_the_stages_task_records(every, lines, tmp_path):
    write(tmp_path, "curate-t0.json", docs=10, bytes=1_000_000, total_bytes=4_000_000, done=True)
    write(tmp_path, "curate-t1.json", docs=5, bytes=500_000, total_bytes=4_000_000, done=False)
    write(tmp_path, "pack-t0.json", docs=999, bytes=999, total_bytes=None, done=True)  # another stage
    (tmp_path / "curate-t2.json").write_text('{"docs": ')  # torn while being written
    every(0.01)
    with TotalProgress(tmp_path, "curate", tasks=3):
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
    assert lines, "no total line within 10 s"
    assert lines[0].startswith("curate total (1/3 tasks done): 15 docs, 1.5MB (")
    assert "ETA" in lines[0]  # 1.5 of 8 MB


def test_the_total_thread_stops_when_the_stage_ends(every, tmp_path):
    every(3600)
    total = TotalProgress(tmp_path, "curate", tasks=1)
    with total:
        assert total._thread.is_alive()
    assert not total._thread.is_alive()


def test_no_total_line_before_the_interval(every, lines, tmp_path):
    write(tmp_path, "curate-t0.json", docs=1, bytes=1, total_bytes=None, done=False)
    every(3600)
    with TotalProgress(tmp_path, "curate", tasks=1):
        time.sleep(0.05)
    assert lines == []
