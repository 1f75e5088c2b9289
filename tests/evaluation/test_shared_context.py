"""Shared-context scoring gives lm-eval's answers with fewer model tokens, and falls back when it cannot."""

from __future__ import annotations

import pytest
import torch

from pretrain.evaluation import shared_context
from pretrain.evaluation.live import live_lm_class
from pretrain.modeling import build_model
from pretrain.tokens.tokenizer import load_tokenizer

CONTEXTS = [
    "def read_file(path):\n    with open(path) as fh:\n",
    "import os\nimport sys\n\nclass Reader:\n    def __init__(self, name):\n",
    "for i in range(10):\n",
]
CHOICES = ["        return fh.read()\n", "    pass\n", "        self.name = name\n", "print(i)\n"]


@pytest.fixture(scope="module")
def scorer_setup(make_run, tmp_path_factory):
    recipe = make_run(tmp_path_factory.mktemp("shared_context") / "run")
    tokenizer = load_tokenizer(recipe.layout.tokenizer)
    torch.manual_seed(0)
    model = build_model(recipe, tokenizer).eval()
    return tokenizer, model


def _requests(tokenizer, long_context: bool = False):
    """Multiple-choice style requests: every context with every choice, plus a long one when asked."""
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    contexts = CONTEXTS + ([" ".join(CONTEXTS * 8)] if long_context else [])
    return [((c, x), encode(c), encode(x)) for c in contexts for x in CHOICES]


def _lm_eval_answers(model, tokenizer, requests, max_length: int):
    """lm-eval's own path: one padded row per request, the full log-softmax."""
    lm = live_lm_class()(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=max_length)
    lm.shared_context = False
    return lm._loglikelihood_tokens(requests, disable_tqdm=True)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_scores_equal_lm_eval_per_request(scorer_setup, attention):
    tokenizer, model = scorer_setup
    model.config._attn_implementation = attention
    try:
        requests = _requests(tokenizer, long_context=True)
        max_length = 48  # the long context is left-truncated exactly as lm-eval does it
        assert any(len(c) + len(x) > max_length + 1 for _, c, x in requests)
        reference = _lm_eval_answers(model, tokenizer, requests, max_length)
        scored, rest = shared_context.score(model, requests, max_length, 4 * max_length, torch.device("cpu"))
        assert rest == [] and sorted(scored) == list(range(len(requests)))
        for i, (logprob, greedy) in enumerate(reference):
            assert scored[i][0] == pytest.approx(logprob, rel=1e-5, abs=1e-4), requests[i][0]
            assert scored[i][1] == greedy
    finally:
        model.config._attn_implementation = "sdpa"


def test_logprobs_chunk_by_chunk_equal_the_whole_log_softmax():
    """Scored positions are taken in chunks (in any order, repeated) with the same values as one log-softmax."""
    torch.manual_seed(0)
    logits = torch.randn(40, 97) * 5
    logits[3, 11] = logits[3].max() + 1  # a known argmax
    picks = torch.tensor([3, 0, 39, 5, 5, 17, 3, 22, 8, 1, 30])
    target = torch.tensor([11, 4, 96, 0, 1, 50, 12, 7, 7, 2, 3])
    logprob, greedy = shared_context._target_logprobs(logits, picks, target, chunk=4)
    whole = torch.log_softmax(logits[picks], dim=-1)
    torch.testing.assert_close(logprob, whole.gather(1, target[:, None]).squeeze(1), rtol=1e-6, atol=1e-6)
    assert greedy.tolist() == (whole.argmax(-1) == target).tolist()
    assert greedy[0] and not greedy[6]
    assert torch.equal(logits[3, 11], logits[3].max())  # the caller's logits are left as they were


def test_rows_run_each_context_once(scorer_setup):
    tokenizer, _ = scorer_setup
    requests = _requests(tokenizer)
    rows, rest = shared_context.plan_rows(requests, max_length=256)
    assert rest == [] and len(rows) == len(CONTEXTS)
    row_tokens = sum(len(r.tokens) for r in rows)
    request_tokens = sum(len(c) + len(x) - 1 for _, c, x in requests)
    contexts = sum(len(c) for _, c, _ in requests[:: len(CHOICES)])
    assert row_tokens == request_tokens - (len(CHOICES) - 1) * contexts


def test_requests_it_cannot_take_are_left_to_lm_eval(scorer_setup):
    tokenizer, model = scorer_setup
    requests = _requests(tokenizer)
    requests.append((("", "x"), [], [5, 6]))  # no context
    requests.append((("a", "b"), [7], list(range(10, 80))))  # continuation longer than max_length
    scored, rest = shared_context.score(model, requests, 64, 256, torch.device("cpu"))
    assert rest == [len(requests) - 2, len(requests) - 1]
    assert len(scored) == len(requests) - 2


def test_live_lm_falls_back_when_the_mask_is_ignored(scorer_setup, monkeypatch):
    """A model whose attention ignores custom masks (flash kernels) must not get wrong scores."""
    tokenizer, model = scorer_setup
    requests = _requests(tokenizer)
    reference = _lm_eval_answers(model, tokenizer, requests, 256)
    lm = live_lm_class()(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=256)
    answers = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    assert [g for _, g in answers] == [g for _, g in reference]
    assert [p for p, _ in answers] == pytest.approx([p for p, _ in reference], rel=1e-5, abs=1e-4)
    assert lm.shared_context and lm._shared_context_checked

    def full_attention(rows, length, implementation, dtype):  # every position sees every other one
        return torch.ones(len(rows), 1, length, length, dtype=torch.bool)

    monkeypatch.setattr(shared_context, "_attention_mask", full_attention)
    lm = live_lm_class()(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=256)
    assert lm._loglikelihood_tokens(requests, disable_tqdm=True) == reference
    assert not lm.shared_context
