"""In-loop evaluation caches what does not change between evaluations, and scores exactly as a fresh lm-eval call."""

from __future__ import annotations

import pytest
import torch

from pretrain.evaluation.harness import flatten
from pretrain.evaluation.live import LiveEvaluation, leaf_tasks
from pretrain.evaluation.task_yaml import write_task_yamls
from pretrain.modeling import build_model
from pretrain.tokens.tokenizer import load_tokenizer

TASKS = ["val_bpb", "stdlib_cloze"]


@pytest.fixture(scope="module")
def live_setup(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("live_cache") / "run"
    recipe = make_run(out, "eval.tasks=[val_bpb,stdlib_cloze]", "eval.limit=8")
    include, local = write_task_yamls(out, recipe, TASKS)
    tokenizer = load_tokenizer(recipe.layout.tokenizer)
    model = build_model(recipe, tokenizer).eval()
    return recipe, include, local, tokenizer, model


def _fresh_scores(include, local, tokenizer, model, max_length: int) -> dict:
    """What an uncached lm-eval call gives: new task objects, new requests, a new HFLM."""
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = get_task_dict(TASKS, TaskManager(include_defaults=False, include_path=str(include)))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=max_length)
    return flatten(evaluate(lm=lm, task_dict=tasks, limit=8, log_samples=False))


def test_cached_evaluations_score_like_fresh_ones(live_setup):
    recipe, include, local, tokenizer, model = live_setup
    seq = recipe.train.seq_len
    live = LiveEvaluation(include, TASKS, local, limit=8, batch_size=4, num_fewshot=None, max_length=seq)
    first = flatten(live(model, tokenizer))
    lm = live.language_model(model, tokenizer)
    encoded = dict(lm._encoded)
    assert encoded  # the first evaluation tokenised every context and continuation
    instances = {t.config.task: list(t._instances) for t in leaf_tasks(live.task_dict)}

    with torch.no_grad():  # the model trains on between two evaluations
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    second = flatten(live(model, tokenizer))

    assert second != first  # new weights, new scores: nothing model-dependent was cached
    fresh = _fresh_scores(include, local, tokenizer, model, seq)
    # accuracies exactly; log-likelihood metrics up to float summation order (the live path runs each
    # shared context once, tests/evaluation/test_shared_context.py); perplexities exponentiate the sums
    assert second.keys() == fresh.keys()
    for key, value in fresh.items():
        assert second[key] == (value if "/acc" in key else pytest.approx(value, rel=1e-5)), key
    # reused, not rebuilt: the wrapper, the tokenisations, the requests (fresh copies with no old responses)
    assert live.language_model(model, tokenizer) is lm
    assert lm._encoded == encoded
    for task in leaf_tasks(live.task_dict):
        old = instances[task.config.task]
        assert len(task._instances) == len(old)
        for new, before in zip(task._instances, old):
            assert new is not before and new.arguments is before.arguments and new.doc is before.doc
            assert len(new.resps) == new.repeats  # this evaluation's responses only


def test_tokenisation_cache_returns_copies(live_setup):
    recipe, include, local, tokenizer, model = live_setup
    live = LiveEvaluation(include, TASKS, local, limit=2, batch_size=4, num_fewshot=None, max_length=64)
    lm = live.language_model(model, tokenizer)
    ids = lm.tok_encode("def read_file(path):")
    ids.append(-1)  # a caller mutating its list must not change what the next caller gets
    assert lm.tok_encode("def read_file(path):") == ids[:-1]
    assert lm.tok_encode("def read_file(path):") == tokenizer("def read_file(path):")["input_ids"]


def test_lm_eval_templates_are_compiled_once():
    """lm-eval compiles a doc's Jinja template for every doc: the live evaluation keeps the compiled ones."""
    from lm_eval import utils

    from pretrain.evaluation.harness import compile_templates_once

    compile_templates_once()
    compile_templates_once()  # idempotent: the second call does not wrap the first
    first = utils.env.from_string("{{query}} -> {{choices[gold]}}")
    assert utils.env.from_string("{{query}} -> {{choices[gold]}}") is first
    doc = {"query": "q", "choices": ["a", "b"], "gold": 1}
    assert utils.apply_template("{{query}} -> {{choices[gold]}}", doc) == "q -> b"
    assert utils.apply_template("{{query}}!", doc) == "q!"


def test_the_loop_does_not_bootstrap_stderr(monkeypatch):
    """lm-eval bootstraps a perplexity's stderr 100,000 times in a process pool (~30 s for LAMBADA, and the pool's
    workers inherit the training loop's SIGTERM handler): the in-loop evaluation asks for none."""
    import lm_eval.evaluator

    seen = {}
    monkeypatch.setattr(lm_eval.evaluator, "evaluate", lambda **kwargs: seen.update(kwargs) or {})
    live = LiveEvaluation.__new__(LiveEvaluation)
    live.task_dict, live.limit = {}, None
    monkeypatch.setattr(live, "language_model", lambda model, tokenizer: "lm", raising=False)
    live(model=None, tokenizer=None)
    assert seen["bootstrap_iters"] == 0
