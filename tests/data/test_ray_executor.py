"""The data stages on a real local Ray cluster (2 CPUs): the same mix as the local executor; a rerun skips
finished tasks; a killed curation task leaves nothing published and the rerun gives the identical result."""

from __future__ import annotations

import pytest

from pretrain.commands.run import run_stage
from pretrain.core.errors import DataError
from pretrain.data import worker
from pretrain.data.mixio import iter_documents
from pretrain.data.records import pass_dir

from .test_curate import _report, _variant, planted  # noqa: F401 - the shared planted corpus fixture


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="needs Ray (`pip install ray`, in the dev extra)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_mix_and_reruns_nothing(planted, ray_cluster, tmp_path):  # noqa: F811
    recipe, _, docs, _ = planted
    on_ray = _variant(recipe, tmp_path, "ray", {"type": "ray", "tasks": 3})
    run_stage(on_ray, "curate")
    assert list(iter_documents(on_ray.out / "mix")) == docs
    assert _report(on_ray) == _report(recipe)
    assert not on_ray.layout.curate_work.exists()


def test_a_killed_task_publishes_nothing_and_the_rerun_is_identical(planted, tmp_path, monkeypatch):  # noqa: F811
    recipe, _, docs, _ = planted
    local = _variant(recipe, tmp_path, "killed", {"type": "local", "tasks": 3})
    real_pass = worker.document_pass

    def task_1_dies_midway(recipe, work, rank, world):
        if rank == 1:  # task 1 dies after some documents
            real_call = worker.DocumentProcessor.__call__
            count = {"n": 0}

            def dying(self, idx, raw):
                count["n"] += 1
                if count["n"] > 20:
                    raise RuntimeError("killed")
                return real_call(self, idx, raw)

            worker.DocumentProcessor.__call__ = dying  # a forked task process: only it is affected
        return real_pass(recipe, work, rank, world)

    monkeypatch.setattr("pretrain.data.curate.document_pass", task_1_dies_midway)
    with pytest.raises(DataError, match=r"pass tasks \[.*1.*\] did not finish \(RuntimeError: killed\)"):
        run_stage(local, "curate")  # the local executor stops the other tasks too when one fails
    work = local.layout.curate_work
    assert not (local.out / "mix").exists() and not pass_dir(work, 1).exists()  # nothing of task 1 published
    # a task stopped by SIGKILL cannot clean up: plant what it leaves, which the rerun must not take for output
    (work / "pass" / ".t00001.tmp-999999-1").mkdir(parents=True)
    finished = {r for r in range(3) if pass_dir(work, r).exists()}

    def recording(recipe, work, rank, world):  # runs in forked task processes: record in files
        if not pass_dir(work, rank).exists():
            (tmp_path / f"ran-{rank}").touch()
        return real_pass(recipe, work, rank, world)

    monkeypatch.setattr("pretrain.data.curate.document_pass", recording)
    run_stage(local, "curate")
    # only the tasks that had not finished ran again
    assert sorted(p.name for p in tmp_path.glob("ran-*")) == [
        f"ran-{r}" for r in sorted({0, 1, 2} - finished)
    ]
    assert list(iter_documents(local.out / "mix")) == docs
    assert _report(local) == _report(recipe)
    assert not work.exists()  # the scratch, partial outputs included, went with the publish


def test_a_rerun_skips_finished_tasks(planted, tmp_path, monkeypatch):  # noqa: F811
    recipe, _, docs, _ = planted
    local = _variant(recipe, tmp_path, "skips", {"type": "local", "tasks": 2})
    real_pass = worker.document_pass

    def counting(recipe, work, rank, world):  # runs in forked task processes: record in files
        if not pass_dir(work, rank).exists():
            (tmp_path / f"ran-{rank}-{len(list(tmp_path.glob(f'ran-{rank}-*')))}").touch()
        return real_pass(recipe, work, rank, world)

    def calls():
        return sorted(p.name for p in tmp_path.glob("ran-*"))

    monkeypatch.setattr("pretrain.data.curate.document_pass", counting)
    from pretrain.commands.stages import stage_output
    from pretrain.data.curate import curation_steps, prepare_inputs
    from pretrain.data.executor import run_steps

    work, out = local.layout.curate_work, stage_output(local, "curate")
    prepare_inputs(local, work, out.fingerprint)
    steps = curation_steps(local, work)
    run_steps(local, work, "curate", steps[:1])  # the pass only, as if the run died after it
    assert calls() == ["ran-0-0", "ran-1-0"]
    run_stage(local, "curate")
    assert calls() == ["ran-0-0", "ran-1-0"]  # the pass was not run again
    assert list(iter_documents(local.out / "mix")) == docs
