"""`pretrain run|train` applies the recipe's launch config: relaunch under accelerate outside a launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pretrain.commands.launch import plan_launch, strip_launch_flags
from pretrain.config import load_recipe
from pretrain.core.launcher import under_launcher
from pretrain.testing import child_pids, is_running, wait_until_gone


def _recipe(tiny_recipe_path, tmp_path, config: str | None):
    over = [f"accelerate_config={config}"] if config else ["accelerate_config=null"]
    # 8-sequence micro batches: tiny's 4,096-token batch then divides over 1 or 2 ranks (as its README launches it)
    over.append("train.micro_batch_size=8")
    return load_recipe(tiny_recipe_path, overrides=over, output_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("config", "relaunched"),
    [
        ("cpu.yaml", False),
        ("cpu_ddp.yaml", True),
        ("single_gpu.yaml", True),
        (None, False),
    ],
)
def test_which_configs_relaunch(config, relaunched, tiny_recipe_path, tmp_path, repo_root):
    path = str(repo_root / "accelerate_configs" / config) if config else None
    launch = plan_launch(_recipe(tiny_recipe_path, tmp_path, path), ["run", "R"], environ={})
    assert (launch is not None) == relaunched
    if launch:
        # restarts after a crash: the tiny recipe's train.max_restarts, by this process (core/supervisor.py)
        assert launch.shown == f"accelerate launch --config_file {path} -m pretrain run R"
        assert launch.argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
        assert launch.max_restarts == 3


def test_process_count_override_and_launcher_trust(tiny_recipe_path, tmp_path, repo_root):
    recipe = _recipe(tiny_recipe_path, tmp_path, str(repo_root / "accelerate_configs" / "cpu.yaml"))
    launch = plan_launch(recipe, ["train", "R"], num_processes=2, environ={})
    assert "--num_processes 2 -m pretrain train R" in launch.shown
    # under accelerate / torchrun (or once relaunched) the launcher is trusted
    for env in ({"LOCAL_RANK": "0"}, {"ACCELERATE_MIXED_PRECISION": "no"}, {"PRETRAIN_RELAUNCHED": "1"}):
        assert under_launcher(env)
        assert plan_launch(recipe, ["train", "R"], num_processes=2, environ=env) is None


def test_launch_flags_are_not_passed_on():
    argv = [
        "run",
        "R",
        "--num-processes",
        "2",
        "--set",
        "a=1",
        "--no-relaunch",
        "--num-processes=3",
        "--no-preflight",
    ]
    assert strip_launch_flags(argv) == ["run", "R", "--set", "a=1"]


def test_train_relaunches_itself_with_two_cpu_ranks(make_run, small_run_overrides, tmp_path, repo_root):
    """Started plainly, `pretrain train` with the 2-process CPU config trains on 2 gloo ranks."""
    out = tmp_path / "run"
    make_run(out)  # the data stages, copied from the session's small run
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    recipe = repo_root / "recipes" / "tiny" / "config.yaml"
    argv = ["train", str(recipe), "--output-dir", str(out), *small_run_overrides]
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", *argv, "--set", f"accelerate_config={config}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"accelerate launch --config_file {config} -m pretrain train {recipe}" in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert next(r for r in records if r.get("event") == "start")["world_size"] == 2
    assert (out / "final" / "model.safetensors").exists()


def test_a_stale_input_fails_once_before_the_launch(tmp_path, repo_root):
    """Missing or stale data fails every rank alike: one error line before launching, no restart loop."""
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    recipe = repo_root / "recipes" / "tiny" / "config.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "train", str(recipe), "--output-dir", str(tmp_path / "run")]
        + ["--set", f"accelerate_config={config}", "--set", "train.micro_batch_size=8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "relaunching" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "missing (run `pretrain" in errors[0]


@pytest.mark.slow  # ~30 s quiet, 86 s loaded; tests/data/test_local_pool.py kills a parent in the default suite
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc: Linux")
def test_ranks_die_with_the_launchers_process_group_and_the_rerun_resumes(
    make_run, small_run_overrides, tmp_path, repo_root
):
    """torchrun starts each rank in a session of its own: killing `accelerate launch`'s process group used to
    leave both ranks training to the end, and their run lock refused the resume."""
    out = tmp_path / "run"
    make_run(out)
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    argv = [sys.executable, "-m", "pretrain", "train", str(repo_root / "recipes" / "tiny" / "config.yaml")]
    argv += ["--output-dir", str(out), *small_run_overrides, "--set", f"accelerate_config={config}"]
    argv += ["--set", "train.checkpoint.every_steps=2", "--set", "eval.enabled=false"]
    launcher = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not list((out / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
            assert launcher.poll() is None, "the launch ended before its first checkpoint"
            time.sleep(0.1)
        # the relaunching process supervises accelerate launch (its one child), whose children are the ranks
        (launch_process,) = child_pids(launcher.pid)
        ranks = [launch_process, *child_pids(launch_process)]
        assert len(ranks) == 3
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        assert wait_until_gone(ranks, 30) == []
    finally:
        for pid in [launcher.pid, *ranks]:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
    assert not (out / "final").exists()
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and (out / "final" / "model.safetensors").exists()


def test_launch_verdict_counts_the_gpus_the_config_asks_for(tiny_recipe_path, tmp_path, repo_root):
    from pretrain.commands.launch import launch_verdict

    ddp = load_recipe(
        tiny_recipe_path,
        overrides=[
            f"accelerate_config={repo_root / 'accelerate_configs' / 'ddp.yaml'}",
            "train.micro_batch_size=2",
        ],
        output_dir=str(tmp_path),
    )
    none = launch_verdict(ddp, gpus=0)
    assert not none.ok and "asks for 8 GPU process(es)" in none.detail and "cpu.yaml" in none.detail
    fewer = launch_verdict(ddp, gpus=4)
    assert not fewer.ok and "--num-processes 4" in fewer.detail
    assert launch_verdict(ddp, gpus=8).ok and launch_verdict(ddp, num_processes=2, gpus=2).ok
    cpu = _recipe(tiny_recipe_path, tmp_path, str(repo_root / "accelerate_configs" / "cpu_ddp.yaml"))
    assert launch_verdict(cpu, gpus=0).ok


@pytest.mark.slow
def test_an_input_error_in_the_ranks_is_not_retried(make_run, small_run_overrides, tmp_path, repo_root):
    """Case 1 of issue #31: an error of the input inside the launched ranks (here a tracker whose package is
    missing, with the preflight checks skipped) was retried by torchrun's --max_restarts, every rank printing
    its traceback each time. The supervising parent does not restart it."""
    import importlib.util

    from pretrain.train.trackers import TRACKER_MODULES

    missing = next((t for t, m in TRACKER_MODULES.items() if importlib.util.find_spec(m) is None), None)
    if missing is None:
        pytest.skip("every tracker package is installed here")
    out = tmp_path / "run"
    make_run(out)
    config = repo_root / "accelerate_configs" / "cpu_ddp.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    argv = [
        "train",
        str(repo_root / "recipes/tiny/config.yaml"),
        "--output-dir",
        str(out),
        *small_run_overrides,
    ]
    argv += ["--no-preflight", "--set", f"accelerate_config={config}", "--set", f"train.trackers=[{missing}]"]
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", *argv], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count("not restarting: the job failed on its input") == 1
    assert "restart 1 of at most" not in proc.stderr
