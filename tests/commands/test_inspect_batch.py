"""Spike forensics end to end: an injected spike is skipped and its documents are named in the log and in
metrics.jsonl; `pretrain inspect-batch` draws that step's batch again, exactly; rollbacks move the data ahead
of the step count and the command follows them."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from pretrain.cli import main
from pretrain.commands.inspect_batch import data_step_of
from pretrain.data.mixio import iter_documents
from pretrain.testing import run_train_stage
from pretrain.tokens.tokenizer import load_tokenizer
from pretrain.train.metrics import EVENT_SKIP, read_records
from pretrain.train.setup import build_train_loader


def _rollback(step: int, frm: int) -> dict:
    return {"event": "rollback", "step": step, "from_step": frm, "skipped_data_steps": 2}


def test_rollbacks_move_the_data_ahead_of_the_step_count():
    rollback = _rollback
    assert data_step_of([], 7, 2) == 6
    # step 13 rolled back to 8: steps 9-13 ran again on batches 13 + 2 = 15 onwards
    records = [rollback(8, 13)]
    assert [data_step_of(records, s, 2) for s in (8, 9, 13, 14)] == [7, 15, 19, 20]
    # then 12 -> 4: steps 5.. read 12 + 7 + 2 batches further; step 9's last run is after that rollback
    records.append(rollback(4, 12))
    assert data_step_of(records, 9, 2) == 8 + 7 + 10


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def spiked(make_run, tmp_path_factory):
    """A run whose step 6 spikes (an injected x1000 loss): skipped by the guard."""
    out = tmp_path_factory.mktemp("spiked") / "run"
    recipe = make_run(
        out,
        "eval.enabled=false",
        "train.tokens=4096",
        "train.stability.min_history=3",
        "train.stability.zscore=4",
        "train.fault_injection.spike_at=[6]",
    )
    handler = Warnings()
    logging.getLogger("pretrain.train").addHandler(handler)
    try:
        run_train_stage(recipe)
    finally:
        logging.getLogger("pretrain.train").removeHandler(handler)
    return recipe, out, handler.lines


@pytest.mark.slow  # the spiked run: ~16 s loaded, over the default suite's budget
def test_a_skipped_spike_names_its_documents_in_the_log_and_the_metrics(spiked):
    recipe, out, lines = spiked
    (event,) = [r for r in read_records(out / "metrics.jsonl") if r.get("event") == EVENT_SKIP]
    assert event["step"] == 6 and event["reason"].startswith("spike") and event["data_step"] == 5
    docs = event["documents"]
    assert docs and event["documents_total"] == len(docs)
    mix = {(r["source"], r["id"]): r["text"] for r in iter_documents(recipe.layout.mix)}
    for doc in docs:  # real documents of the mix, named by source and id, with their first characters
        text = mix[(doc["source"], doc["id"].split("#rep")[0])]
        assert " ".join(text.split()).startswith(doc["text"][:20].strip())
    (line,) = [x for x in lines if x.startswith("step 6: update skipped")]
    first = docs[0]
    assert f"data step 5, {len(docs)} documents: {first['source']}/{first['id']}" in line


@pytest.mark.slow  # the spiked run: ~16 s loaded, over the default suite's budget
def test_inspect_batch_names_the_same_documents_and_reads_the_same_tokens(spiked, capsys):
    recipe, out, _ = spiked
    assert main(["inspect-batch", str(out), "--step", "6", "--json", "--tokens"]) == 0
    report = json.loads(capsys.readouterr().out)
    (event,) = [r for r in read_records(out / "metrics.jsonl") if r.get("event") == EVENT_SKIP]
    assert report["data_step"] == 5
    assert [{k: d[k] for k in ("source", "id", "text")} for d in report["documents"]] == event["documents"]
    # the tokens training read at step 6: a fresh loader iterated the way the trainer does
    loader = build_train_loader(recipe, 0, 1, 8)
    for _ in range(5 * loader.accum_steps):
        next(loader)
    rows = []
    for _ in range(loader.accum_steps):
        batch = next(loader)
        rows += [np.append(i, lab[-1]) for i, lab in zip(batch["input_ids"].numpy(), batch["labels"].numpy())]
    assert np.array_equal(np.array(report["tokens"]), np.stack(rows))
    tokenizer = load_tokenizer(recipe.layout.tokenizer)
    assert tokenizer.decode(report["tokens"][0][:5])  # real token ids of the run's tokenizer


@pytest.mark.slow  # the spiked run: ~16 s loaded, over the default suite's budget
def test_inspect_batch_prints_a_readable_list_and_refuses_bad_input(spiked, capsys, tmp_path):
    _, out, _ = spiked
    assert main(["inspect-batch", str(out), "--data-step", "0"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("data step 0: 8 windows of 64 tokens, ") and len(text) > 1
    assert main(["inspect-batch", str(out), "--step", "0"]) == 1
    assert "--step counts from 1" in capsys.readouterr().err
    assert main(["inspect-batch", str(tmp_path), "--step", "3"]) == 1
    assert "is it a run's output_dir?" in capsys.readouterr().err
