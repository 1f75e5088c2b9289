"""Curation end to end on a planted corpus: each junk class is removed, clean documents survive, shares hold."""

from __future__ import annotations

import functools
import gzip
import json
import os
import random

import dill
import pytest
import yaml

from pretrain.config import load_recipe
from pretrain.core.errors import CurationSubmitted, DataError, RecipeError
from pretrain.data.curate import curation_steps, prepare_inputs, publish_mix
from pretrain.data.executor import slurm_jobs, submit_slurm
from pretrain.data.mixio import iter_documents, read_manifest
from pretrain.pipeline import run_stage
from pretrain.stages import is_current, stage_output

WORDS = (
    "river mountain teacher garden window library market science history music village ocean forest "
    "student bridge lantern harvest engine planet story winter summer kitchen doctor"
).split()


STOP = "the of and to in that with for on as by at from is was be have".split()
_SYL = "ba ce di fo gu ha ke li mo nu pa re si to vu wa xe yi zo lan ter mon dor vel".split()
VOCAB = sorted(
    {
        "".join(random.Random(i).choice(_SYL) for _ in range(random.Random(i).randint(2, 3)))
        for i in range(2000)
    }
)


def prose(rng: random.Random, sentences: int = 12) -> str:
    out = []
    for _ in range(sentences):
        words = [
            rng.choice(STOP) if rng.random() < 0.35 else rng.choice(VOCAB) for _ in range(rng.randint(9, 18))
        ]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def code(rng: random.Random, funcs: int = 8) -> str:
    blocks = []
    for i in range(funcs):
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{i}"
        blocks.append(
            f"def {name}(value, count=3):\n    total = 0\n    for item in range(count):\n"
            f"        total += item * value  # {rng.choice(WORDS)}\n    return total\n"
        )
    return "\n\n".join(blocks)


def write_recipe(tmp_path, sources, tasks=None, target_bytes=None, named_tasks=None):
    raw = {
        "name": "planted",
        "seed": 7,
        "output_dir": str(tmp_path / "out"),
        "data": {
            "sources": sources,
            "mixture": {"target_bytes": target_bytes} if target_bytes else {},
            "workers": 2,
        },
        "model": {
            "model_type": "llama",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
        "train": {"seq_len": 32, "micro_batch_size": 2, "global_batch_tokens": 64, "steps": 2},
        "eval": {"tasks": named_tasks or [], "local_tasks": tasks or []},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    rng = random.Random(0)
    clean_prose = [prose(rng) for _ in range(60)]
    clean_code = [code(rng) for _ in range(40)]
    exact = clean_prose[:5]
    near = []
    for doc in clean_prose[5:10]:
        words = doc.split()
        for i in rng.sample(range(len(words)), 3):
            words[i] = "changed"
        near.append(" ".join(words))
    bench_items = [
        {"query": prose(rng, 2), "choices": ["yes it is.", "no it is not."], "gold": 0} for _ in range(5)
    ]
    contaminated = [f"{prose(rng, 4)} {it['query']} yes it is. {prose(rng, 4)}" for it in bench_items]
    junk = ["buy now " * 200, "\n".join(["same line repeated here"] * 80), "\x00\x01\x02 ### @@@ ~~~ " * 40]
    boiler = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n{}\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicense text"
    prose_docs = clean_prose + exact + near + contaminated + junk
    with open(tmp / "prose.jsonl", "w") as fh:
        for d in prose_docs:
            fh.write(json.dumps({"text": d}) + "\n")
    with gzip.open(tmp / "code.jsonl.gz", "wt") as fh:
        for d in clean_code:
            fh.write(json.dumps({"content": d}) + "\n")
    (tmp / "book.txt").write_text(boiler.format(prose(rng, 30)).replace("\n", "\r\n"), encoding="utf-8-sig")
    with open(tmp / "bench.jsonl", "w") as fh:
        for it in bench_items:
            fh.write(json.dumps(it) + "\n")
    sources = [
        {
            "name": "web",
            "type": "local",
            "paths": [str(tmp / "prose.jsonl")],
            "weight": 0.6,
            "filters": {"preset": "prose", "min_chars": 100},
        },
        {
            "name": "code",
            "type": "local",
            "paths": [str(tmp / "code.jsonl.gz")],
            "text_field": "content",
            "weight": 0.3,
            "filters": {"preset": "code"},
        },
        {
            "name": "books",
            "type": "local",
            "paths": [str(tmp / "book.txt")],
            "weight": 0.1,
            "max_epochs": 50,
            "strip_patterns": ["gutenberg"],  # the named Project Gutenberg pattern
            "filters": {"preset": "none"},
        },
    ]
    tasks = [{"name": "planted_mc", "format": "mc_query_choices", "path": str(tmp / "bench.jsonl")}]
    recipe = write_recipe(tmp, sources, tasks, target_bytes=120_000)
    run_stage(recipe, "curate")
    report = json.loads((recipe.out / "curation_report.json").read_text())
    docs = list(iter_documents(recipe.out / "mix"))
    return (
        recipe,
        report,
        docs,
        {"clean": clean_prose[10:], "exact": exact, "near": near, "contaminated": contaminated, "junk": junk},
    )


def _texts(docs):
    return {d["text"] for d in docs}


def test_each_planted_class_is_removed(planted):
    recipe, report, docs, cls = planted
    web = next(s for s in report["sources"] if s["name"] == "web")
    dropped = web["dropped"]
    assert dropped["exact_dup"]["docs"] == 5
    assert (
        dropped["near_dup"]["docs"] >= 4
    )  # MinHash is probabilistic; 14x8 bands catch 3-word edits reliably
    assert dropped["contamination"]["docs"] == 5
    assert report["contamination"]["planted_mc"] == 5
    filtered = sum(v["docs"] for k, v in dropped.items() if k.startswith("filter:"))
    assert filtered >= 3
    texts = _texts(docs)
    for doc in cls["contaminated"] + cls["junk"]:
        assert doc not in texts


def test_clean_documents_survive(planted):
    _, report, docs, cls = planted
    web = next(s for s in report["sources"] if s["name"] == "web")
    assert web["kept"]["docs"] >= 50 + 5  # 50 clean + one copy of each exact-dup cluster
    assert len({d["id"] for d in docs if d["source"] == "code"}) >= 30


def test_boilerplate_and_encoding_normalised(planted):
    _, _, docs, _ = planted
    book = next(d["text"] for d in docs if d["source"] == "books")
    assert "PROJECT GUTENBERG" not in book and "license text" not in book
    assert "\r" not in book and not book.startswith("\ufeff")


def test_manifest_and_report_agree(planted):
    recipe, report, docs, _ = planted
    manifest = read_manifest(recipe.out / "mix")
    for s in report["sources"]:
        entry = manifest["sources"][s["name"]]
        assert entry["bytes"] == s["kept"]["bytes"] and entry["docs"] == s["kept"]["docs"]
        assert entry["docs"] == sum(1 for d in docs if d["source"] == s["name"])
        assert abs(entry["share"] - s["requested_share"]) < 1e-3
    assert (recipe.out / "curation_report.md").read_text().startswith("# Curation report")


def _mix_files(recipe) -> dict[str, bytes]:
    mix = recipe.out / "mix"
    return {str(p.relative_to(mix)): p.read_bytes() for p in sorted(mix.rglob("*.jsonl"))}


def test_curation_is_deterministic(planted, tmp_path):
    recipe, *_ = planted
    again = load_recipe(recipe.path, output_dir=str(tmp_path / "again"))
    run_stage(again, "curate")
    assert _mix_files(again) == _mix_files(recipe)


def test_hub_source_through_datasets_loader(tmp_path):
    rng = random.Random(1)
    data = tmp_path / "hub.json"
    data.write_text("\n".join(json.dumps({"body": prose(rng)}) for _ in range(30)))
    recipe = write_recipe(
        tmp_path,
        [
            {
                "name": "hubby",
                "type": "hub",
                "path": "json",
                "data_files": [str(data)],
                "text_field": "body",
                "weight": 1.0,
                "streaming": False,
                "budget": {"docs": 20},
                "filters": {"preset": "none"},
            }
        ],
    )
    run_stage(recipe, "curate")
    report = json.loads((recipe.out / "curation_report.json").read_text())
    assert report["sources"][0]["read"]["docs"] == 20


@pytest.mark.parametrize(
    "content,expected",
    [
        (b'{"text": "ok"}\n{"text": broken\n', "invalid JSON line"),
        (b'{"other": "x"}\n', "no text field 'text'"),
    ],
)
def test_bad_input_names_source_and_file(tmp_path, content, expected):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    recipe = write_recipe(tmp_path, [{"name": "broken", "type": "local", "paths": [str(bad)], "weight": 1.0}])
    with pytest.raises(DataError, match=expected) as info:
        run_stage(recipe, "curate")
    assert "broken" in str(info.value) and str(bad) in str(info.value)
    assert not (recipe.out / "mix").exists()


def test_truncated_gzip_is_a_clear_error(tmp_path):
    good = gzip.compress(b'{"text": "hello world"}\n' * 1000)
    bad = tmp_path / "cut.jsonl.gz"
    bad.write_bytes(good[: len(good) // 2])
    recipe = write_recipe(tmp_path, [{"name": "cut", "type": "local", "paths": [str(bad)], "weight": 1.0}])
    with pytest.raises(DataError, match="cannot read"):
        run_stage(recipe, "curate")


def test_source_emptied_by_filters(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("tiny\n\nalso tiny\n")
    recipe = write_recipe(
        tmp_path,
        [
            {
                "name": "shorty",
                "type": "local",
                "paths": [str(f)],
                "doc_split": "paragraph",
                "weight": 1.0,
                "filters": {"preset": "none", "min_chars": 50},
            }
        ],
    )
    with pytest.raises(DataError, match="all 2 documents were removed"):
        run_stage(recipe, "curate")


def test_lm_eval_named_tasks_are_decontaminated_through_their_datasets(tmp_path, monkeypatch):
    """A task named in eval.tasks is read through lm-eval's task definition and its dataset; one that cannot
    be loaded (here an unknown name; offline, a Hub dataset not in the cache) is reported as unchecked.

    The task's dataset is a local json file (no Hub here), loaded by lm-eval exactly as a Hub task's would be.
    """
    import lm_eval.tasks

    rng = random.Random(3)
    questions = [prose(rng, 2) for _ in range(4)]
    bench = tmp_path / "quiz.jsonl"
    bench.write_text(
        "\n".join(json.dumps({"q": q, "options": ["yes.", "no."], "label": 0}) for q in questions)
    )
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "quiz.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "quiz",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(bench)}},
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "{{q}}",
                "doc_to_choice": "{{options}}",
                "doc_to_target": "{{label}}",
            }
        )
    )
    manager = lm_eval.tasks.TaskManager(include_defaults=False, include_path=str(task_dir))
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", lambda *a, **k: manager)  # stands in for the Hub index
    clean = [prose(rng) for _ in range(30)]
    contaminated = [f"{prose(rng, 3)} {questions[i]} yes. {prose(rng, 3)}" for i in range(3)]
    src = tmp_path / "web.jsonl"
    src.write_text("\n".join(json.dumps({"text": t}) for t in clean + contaminated))
    recipe = write_recipe(
        tmp_path,
        [{"name": "web", "type": "local", "paths": [str(src)], "weight": 1.0, "filters": {"preset": "none"}}],
        named_tasks=["quiz", "no_such_task"],
    )
    run_stage(recipe, "curate")
    report = json.loads((recipe.out / "curation_report.json").read_text())
    assert report["contamination"]["quiz"] == 3
    assert "no_such_task" in report["contamination_unchecked"]
    assert "no_such_task" not in report["contamination"]
    assert "**not checked**" in (recipe.out / "curation_report.md").read_text()
    kept = [d["text"] for d in iter_documents(recipe.out / "mix")]
    assert not any(q in t for q in questions for t in kept)
    assert sum(t in kept for t in clean) == 30


# --- executors --------------------------------------------------------------------------------
# Curation on datatrove executors: the mix is the same for any number of shards, and the Slurm pipeline
# (job array + dependent publish job) produces it too when its tasks are run the way Slurm would run them.
#
# There is no Slurm here: the test pickles the executors with dill (as datatrove does for `sbatch`), and runs
# each array task through `_run_for_rank`, which is what the job script calls on the nodes.


def _variant(recipe, tmp_path, name: str, executor: dict):
    raw = yaml.safe_load(recipe.path.read_text())
    raw["output_dir"] = str(tmp_path / name)
    raw["data"]["executor"] = executor
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def _report(recipe) -> dict:
    report = json.loads((recipe.out / "curation_report.json").read_text())
    return {k: v for k, v in report.items() if k != "recipe"}


def test_same_mix_for_any_number_of_shards(planted, tmp_path):
    recipe, report, docs, _ = planted
    three = _variant(recipe, tmp_path, "three", {"type": "local", "tasks": 3})
    run_stage(three, "curate")
    # the same documents in the same (corpus) order, from differently split files
    assert list(iter_documents(three.out / "mix")) == docs
    assert read_manifest(three.out / "mix")["shards"] != read_manifest(recipe.out / "mix")["shards"]
    assert _report(three) == _report(recipe)
    assert not three.layout.curate_work.exists()


def test_slurm_pipeline_publishes_the_same_mix(planted, tmp_path, monkeypatch):
    recipe, *_ = planted
    # what a job step sees on its node: the node list, and scontrol to expand it
    monkeypatch.setenv("SLURM_NODELIST", "node01")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node01\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    slurm = _variant(
        recipe,
        tmp_path,
        "slurm",
        {"type": "slurm", "tasks": 2, "slurm": {"partition": "cpu", "time": "01:00:00", "cpus_per_task": 2}},
    )
    work = slurm.layout.curate_work
    out = stage_output(slurm, "curate")
    prepare_inputs(slurm, work, out.fingerprint)
    jobs = slurm_jobs(
        slurm, work, "curate", curation_steps(slurm, work), functools.partial(publish_mix, slurm, work, out)
    )
    script = jobs[0].get_launch_file_contents(jobs[0].get_sbatch_args(max_array=2), "srun ...")
    assert "--partition=cpu" in script and "--time=01:00:00" in script and "--cpus-per-task=2" in script
    assert [job.tasks for job in jobs] == [2, 2, 1, 2, 1]  # pass, dedup buckets, cluster, mix files, publish
    assert all(later.depends is earlier for earlier, later in zip(jobs, jobs[1:]))

    for job in jobs[:-1]:
        job = dill.loads(dill.dumps(job))
        for rank in reversed(range(job.tasks)):  # array tasks finish in any order
            job._run_for_rank(rank)
    assert not (slurm.out / "mix").exists()  # nothing is published before the publish job
    dill.loads(dill.dumps(jobs[-1]))._run_for_rank(0)
    assert is_current(slurm, "curate")
    assert list(iter_documents(slurm.out / "mix")) == list(iter_documents(recipe.out / "mix"))
    assert _report(slurm) == _report(recipe)
    assert [p.name for p in work.iterdir()] == ["logs"]  # scratch removed, the jobs' logs kept
    run_stage(slurm, "curate")  # a later `pretrain run` finds the mix current and submits nothing


def test_second_submission_while_queued_is_refused(planted, tmp_path, monkeypatch):
    recipe, *_ = planted
    slurm = _variant(recipe, tmp_path, "queued", {"type": "slurm", "slurm": {"partition": "cpu"}})
    from datatrove.executor import SlurmPipelineExecutor

    submitted = []

    def fake_run(self):  # sbatch is not installed here; record what would be submitted
        if self.depends is not None:
            self.depends.run()
        self.job_id = str(100 + len(submitted))
        submitted.append(self.tasks)

    monkeypatch.setattr(SlurmPipelineExecutor, "run", fake_run)
    with pytest.raises(
        CurationSubmitted, match=r"planted-curate-pass \(2 tasks, job 100\).*publish \(1 tasks, job 104\)"
    ):
        run_stage(slurm, "curate")
    assert submitted == [2, 2, 1, 2, 1]  # data.workers tasks by default; cluster and publish are single tasks
    with pytest.raises(CurationSubmitted, match="were submitted at .* wait for them"):
        submit_slurm(slurm, slurm.layout.curate_work, "curate", [], publish=lambda: None)
    assert submitted == [2, 2, 1, 2, 1]


def test_slurm_needs_its_settings(planted, tmp_path):
    recipe, *_ = planted
    with pytest.raises(RecipeError, match=r"data.executor: .*needs a `slurm:` block"):
        _variant(recipe, tmp_path, "bad", {"type": "slurm"})


def _sharded_corpus(tmp_path):
    """A jsonl file read in byte ranges and a parquet file of 6 row groups, with duplicates across units."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(3)
    docs = [prose(rng, 6) for _ in range(120)]
    lines = docs + docs[:10]  # exact duplicates in later units
    with open(tmp_path / "web.jsonl", "w") as fh:
        for d in lines:
            fh.write(json.dumps({"text": d}) + "\n")
    table = pa.table({"text": [prose(rng, 6) for _ in range(60)] + docs[50:60]})
    pq.write_table(table, tmp_path / "books.parquet", row_group_size=12)
    return [
        {
            "name": "web",
            "type": "local",
            "paths": [str(tmp_path / "web.jsonl")],
            "weight": 1,
            "filters": {"preset": "none"},
        },
        {
            "name": "books",
            "type": "local",
            "paths": [str(tmp_path / "books.parquet")],
            "weight": 1,
            "filters": {"preset": "none"},
        },
    ]


def test_tasks_read_only_their_units_and_keep_the_same_set(tmp_path, monkeypatch):
    from pretrain.data import sources as sources_mod

    monkeypatch.setattr(sources_mod, "UNIT_BYTES", 4096)  # web.jsonl (~85 KB) becomes ~20 byte ranges
    corpus = _sharded_corpus(tmp_path)
    runs = {}
    for tasks in (1, 4):
        sub = tmp_path / f"t{tasks}"
        sub.mkdir()
        recipe = write_recipe(sub, corpus)
        recipe = _variant(recipe, sub, f"tasks{tasks}", {"type": "local", "tasks": tasks})
        run_stage(recipe, "curate")
        runs[tasks] = (list(iter_documents(recipe.out / "mix")), _report(recipe))
    (docs1, rep1), (docs4, rep4) = runs[1], runs[4]
    assert docs1 == docs4 and rep1 == rep4  # no budget: the same kept documents for any number of tasks
    web, books = rep4["sources"]
    assert (
        web["dropped"]["exact_dup"]["docs"] == 10 and books["dropped"]["exact_dup"]["docs"] == 10
    )  # across sources
    size = (tmp_path / "web.jsonl").stat().st_size
    assert web["read"]["input_bytes"] == size and web["read"]["docs"] == 130  # each byte range read once
    assert books["read"]["docs"] == 70


def test_budgets_are_split_over_tasks_deterministically(tmp_path, monkeypatch):
    from pretrain.data import sources as sources_mod

    monkeypatch.setattr(sources_mod, "UNIT_BYTES", 4096)
    corpus = _sharded_corpus(tmp_path)
    corpus[0]["budget"] = {"docs": 50}
    reads = []
    for attempt in range(2):
        recipe = _variant(
            write_recipe(tmp_path, corpus), tmp_path, f"b{attempt}", {"type": "local", "tasks": 4}
        )
        run_stage(recipe, "curate")
        reads.append((list(iter_documents(recipe.out / "mix")), _report(recipe)))
    assert reads[0] == reads[1]
    web = reads[0][1]["sources"][0]
    assert web["read"]["docs"] == 50
    assert web["read"]["input_bytes"] < 0.8 * (tmp_path / "web.jsonl").stat().st_size  # stopped early
