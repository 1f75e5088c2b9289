"""Evaluating the live model in the training loop: lm-eval's requests scored by the model being trained.

`LiveEvaluation` holds lm-eval's tasks, built once, and scores them with `live_lm_class()`, an lm-eval model
around the in-memory model (no save and reload); shared contexts are scored once (evaluation/shared_context.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

from pretrain.core.network import NETWORK_ERRORS
from pretrain.evaluation import shared_context
from pretrain.evaluation.harness import (
    PROGRESS_BAR,
    SELF_CHECK_REQUESTS,
    compile_templates_once,
    log,
    quiet_lm_eval,
    task_manager,
    unreachable_error,
)
from pretrain.evaluation.metrics import chance_levels
from pretrain.evaluation.rc_bpb import add_rc_bpb_to_all


class LiveEvaluation:
    """lm-eval on a model object (no reload from disk), at every in-loop evaluation of a run.

    What does not change between evaluations is built once and reused: the task objects, the requests
    they build (copied fresh for each evaluation, since lm-eval writes the responses into them), the
    tokenisation of every context and continuation, and the `HFLM` wrapper around the live model. Only
    the model's forwards and the scoring run again, so the scores are those of a fresh `evaluate` call.
    """

    def __init__(
        self,
        include_dir: Path,
        tasks: list[str],
        local: list[str],
        limit: int | None,
        batch_size: int,
        num_fewshot: int | None,
        max_length: int,
        rc_bpb: bool = False,
        lm_factory: Callable[..., object] | None = None,
    ):
        from lm_eval.tasks import get_task_dict

        quiet_lm_eval()
        compile_templates_once()
        try:
            self.task_dict = get_task_dict(tasks, task_manager(include_dir, tasks, local))
        except NETWORK_ERRORS as exc:
            raise unreachable_error(tasks, exc) from None
        for task in leaf_tasks(self.task_dict):
            if num_fewshot is not None and hasattr(task, "set_config"):
                task.set_config(key="num_fewshot", value=num_fewshot)
            _build_requests_once(task)
        if rc_bpb:
            add_rc_bpb_to_all(leaf_tasks(self.task_dict))
        self.limit, self.batch_size, self.max_length = limit, batch_size, max_length
        self.chance = chance_levels(self.task_dict, limit)
        # builds the lm-eval model around the live one (default `live_lm_class()`; several ranks splitting the
        # requests: evaluation/data_parallel.py)
        self.lm_factory = lm_factory
        self._lm = None

    def language_model(self, model, tokenizer):
        """The cached lm-eval wrapper of `model` (rebuilt only if a different model or tokenizer is passed)."""
        lm = self._lm
        if lm is None or lm.model is not model or lm.tokenizer is not tokenizer:
            factory = self.lm_factory or live_lm_class()
            lm = self._lm = factory(
                pretrained=model, tokenizer=tokenizer, batch_size=self.batch_size, max_length=self.max_length
            )
        return lm

    def __call__(self, model, tokenizer) -> dict:
        from lm_eval.evaluator import evaluate

        return evaluate(
            lm=self.language_model(model, tokenizer),
            task_dict=self.task_dict,
            limit=self.limit,
            log_samples=True,  # each document's score: regressions.py pairs them across evaluations
            verbosity="WARNING",
            # no bootstrapped stderr in the loop (the records drop it): a perplexity metric (LAMBADA) bootstrapped
            # 100,000 times in a process pool, ~30 s per evaluation, and the pool's workers inherit the training
            # loop's SIGTERM handler, so terminating the pool could hang the run
            bootstrap_iters=0,
        )


def leaf_tasks(task_dict: dict):
    """The task objects of a `get_task_dict` result (current `{"tasks": ...}` layout or the older nesting)."""
    values = task_dict["tasks"].values() if "tasks" in task_dict else task_dict.values()
    for value in values:
        if isinstance(value, dict):  # a group holds its subtasks
            yield from leaf_tasks(value)
        elif value is not None and hasattr(value, "build_all_requests"):
            yield value


def _build_requests_once(task) -> None:
    """Make `task.build_all_requests` build (render the prompts of) each request set once.

    `evaluate` calls it at every evaluation with the same arguments; later calls hand out fresh copies
    of the first build's requests: lm-eval appends the model's responses to the instances it is given,
    so they are never shared between two evaluations.
    """
    build = task.build_all_requests
    built: dict[str, list] = {}

    def build_all_requests(**kwargs) -> None:
        key = repr(sorted(kwargs.items()))
        if key not in built:
            build(**kwargs)
            built[key] = list(task._instances)
        task._instances = [dataclasses.replace(inst, resps=[], filtered_resps={}) for inst in built[key]]

    task.build_all_requests = build_all_requests


@functools.cache
def live_lm_class():
    """`HFLM` for a model that keeps training: tokenisations are remembered, forwards skip the KV cache.

    Defined on first use so that importing this module does not import lm-eval (CLI start-up time).
    """
    import torch
    from lm_eval.models.huggingface import HFLM

    class LiveHFLM(HFLM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._encoded: dict[tuple, list[int]] = {}
            self.shared_context = True  # requests sharing a context run it once (see shared_context.py)
            self._shared_context_checked = False
            self.before_forward = None  # called before each forward (evaluation/data_parallel.py)

        def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
            # the tasks' texts are the same at every evaluation; kwargs are part of the key in case they matter
            key = (string, add_special_tokens, left_truncate_len, tuple(sorted(kwargs.items())))
            ids = self._encoded.get(key)
            if ids is None:
                ids = self._encoded[key] = super().tok_encode(
                    string,
                    add_special_tokens=add_special_tokens,
                    left_truncate_len=left_truncate_len,
                    **kwargs,
                )
            return list(ids)  # callers slice and concatenate; never hand out the cached list itself

        def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
            if not self.shared_context or self.backend != "causal":
                return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
            budget = (self.batch_size if isinstance(self.batch_size, int) else 16) * self.max_length
            from tqdm import tqdm

            # the same bar lm-eval's path shows (the run log keeps it, the console does not)
            bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc=PROGRESS_BAR)
            try:
                with bar:
                    scored, rest = shared_context.score(
                        self.model,
                        requests,
                        self.max_length,
                        budget,
                        self.device,
                        self._autocast,
                        bar.update,
                        self.before_forward,
                    )
            except (AttributeError, TypeError, ValueError, RuntimeError, IndexError) as exc:  # no such inputs
                log.warning("shared-context scoring failed (%s): scoring each request on its own", exc)
                self.shared_context = False
                return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
            if not self._shared_context_checked and scored:
                if not self._agrees_with_lm_eval(requests, scored):
                    return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
            if rest:
                own = super()._loglikelihood_tokens([requests[i] for i in rest], disable_tqdm, override_bs)
                scored.update(zip(rest, own, strict=True))
            answers = [scored[i] for i in range(len(requests))]
            for (request_str, _, _), answer in zip(requests, answers, strict=True):
                if request_str is not None:  # lm-eval's own path records each answer the same way
                    self.cache_hook.add_partial("loglikelihood", request_str, answer)
            return answers

        def _agrees_with_lm_eval(self, requests, scored: dict) -> bool:
            """Score the first requests the shared-context way and lm-eval's way once per run; on a mismatch
            (a model whose attention ignores custom masks) keep lm-eval's path for the rest of the run."""
            sample = sorted(scored)[:SELF_CHECK_REQUESTS]
            reference = super()._loglikelihood_tokens([requests[i] for i in sample], True, None)
            per_token = 1e-4 if self.mixed_precision_dtype is None else 3e-2
            for i, (logprob, greedy) in zip(sample, reference, strict=True):
                ours, our_greedy = scored[i]
                if abs(ours - logprob) > per_token * len(requests[i][2]) + 1e-4 or our_greedy != greedy:
                    log.warning(
                        "shared-context scoring disagrees with lm-eval (%.6f vs %.6f): scoring each "
                        "request on its own for the rest of the run",
                        ours,
                        logprob,
                    )
                    self.shared_context = False
                    return False
            self._shared_context_checked = True
            return True

        def _autocast(self):
            return torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            )

        def _model_call(self, inps, attn_mask=None, labels=None):
            if self.before_forward is not None:
                self.before_forward()
            if attn_mask is not None or labels is not None or self.backend != "causal":
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            # the trained model's config keeps use_cache on (for generate); scoring needs no KV cache
            with torch.no_grad(), self._autocast():
                return self.model(inps, use_cache=False).logits

    return LiveHFLM
