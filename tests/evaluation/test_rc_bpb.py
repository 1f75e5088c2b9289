"""rc bpb: bits per byte of the gold answer, from the requests a multiple-choice or cloze task already makes."""

from __future__ import annotations

import json
import math

import yaml
from lm_eval.api.model import LM

from pretrain.evaluation.harness import task_manager
from pretrain.evaluation.live import leaf_tasks
from pretrain.evaluation.rc_bpb import RC_BPB, add_rc_bpb_to_all, summed_bits_per_byte
from pretrain.evaluation.task_yaml import _task

ITEMS = {
    "mc_query_choices": [
        {
            "query": "Question: sky?\nAnswer:",
            "choices": ["wrong green", "right blue", "wrong red"],
            "gold": 1,
        },
        {"query": "Question: two plus two?\nAnswer:", "choices": ["right four", "wrong five"], "gold": 0},
    ],
    "winogrande_partial": [
        {"context_options": ["wrong the cat", "right the dog"], "continuation": "barked loudly.", "gold": 1},
    ],
    # the word's space: given by the file, or added (lm-eval joins context and target with nothing between)
    "lambada_context": [
        {"context": "She opened the", "continuation": " right door"},
        {"context": "He read the", "continuation": "right book"},
        {"context": "It was\n", "continuation": "right there"},
    ],
}


class _MarkedLM(LM):
    """Spends 1 bit per byte of a continuation when the request holds the word `right`, 3 otherwise, so the
    rc bpb of a task is 1.0 exactly when its gold answer is the one scored."""

    def __init__(self):
        super().__init__()
        self.asked: list[tuple[str, str]] = []

    def loglikelihood(self, requests, disable_tqdm=False):
        out = []
        for request in requests:
            context, continuation = request.args
            self.asked.append((context, continuation))
            bits = 1.0 if "right" in context + continuation else 3.0
            out.append((-bits * math.log(2) * len(continuation.encode("utf-8")), False))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError


def test_every_format_scores_its_gold_continuation(tmp_path):
    from lm_eval.evaluator import evaluate
    from lm_eval.tasks import get_task_dict

    names = []
    for fmt, items in ITEMS.items():
        name = f"t_{fmt}"
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(item) + "\n" for item in items))
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_task(name, data, fmt)))
        names.append(name)
    task_dict = get_task_dict(names, task_manager(tmp_path, names, names))
    assert sorted(add_rc_bpb_to_all(leaf_tasks(task_dict))) == sorted(names)
    assert add_rc_bpb_to_all(leaf_tasks(task_dict)) == []  # once only
    lm = _MarkedLM()
    results = evaluate(lm=lm, task_dict=task_dict, log_samples=False, verbosity="WARNING")["results"]
    cloze = {context: target for context, target in lm.asked if "opened" in context or "read" in context}
    assert cloze == {"She opened the": " right door", "He read the": " right book"}
    assert ("It was\n", "right there") in lm.asked
    for name in names:
        assert results[name][f"{RC_BPB},none"] == 1.0, (name, results[name])
    assert results["t_mc_query_choices"]["acc,none"] == 1.0  # the task's own metrics are kept


def test_the_aggregate_is_a_ratio_of_sums():
    # 10 bytes at 1 bit each and 30 bytes at 3 bits each: 100 bits / 40 bytes, not the mean of 1 and 3
    items = [(-10 * math.log(2), 10), (-90 * math.log(2), 30)]
    assert math.isclose(summed_bits_per_byte(items), 2.5)
