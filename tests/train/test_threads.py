"""CPU threads from the machine's load (case 6 of issue #31: 4.2x slower with one thread per core at load 14)."""

from __future__ import annotations

import torch

from pretrain.train import threads
from pretrain.train.threads import choose_cpu_threads, cpu_threads, others_running


def test_threads_are_the_cores_left_over_at_least_one():
    assert cpu_threads(cores=2, default=2, others=0) == 2  # quiet: torch's default
    assert cpu_threads(cores=2, default=2, others=1) == 1
    assert cpu_threads(cores=2, default=2, others=13) == 1  # the load
    assert cpu_threads(cores=16, default=16, others=4) == 12
    assert cpu_threads(cores=16, default=4, others=4) == 4  # never more than torch would use
    assert cpu_threads(cores=2, default=2, others=None) == 2  # the kernel does not say: unchanged


def test_a_busy_machine_gets_one_thread_and_a_line(monkeypatch, tmp_path, caplog):
    busy = tmp_path / "loadavg"
    busy.write_text("14.10 12.00 9.00 15/187 2258\n")
    monkeypatch.setattr(threads, "LOADAVG", busy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert others_running(samples=1, interval=0) == 14
    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    with caplog.at_level("INFO", logger="pretrain.train"):
        assert choose_cpu_threads() == 1
    assert chosen == [1] and "machine busy (14 other processes running on 2 cores)" in caplog.text
    assert "set OMP_NUM_THREADS to choose" in caplog.text
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's (or launcher's) choice is obeyed
    assert choose_cpu_threads() is None and chosen == [1]
    assert torch.get_num_threads() == 2 and before >= 1
