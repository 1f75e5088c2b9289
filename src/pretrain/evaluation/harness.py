"""Running lm-eval: one function for saved checkpoints (the CLI's exact path) and one for the live model."""

from __future__ import annotations

import logging
from pathlib import Path

from pretrain.core.errors import PretrainError
from pretrain.core.network import NETWORK_ERRORS, network_reason
from pretrain.core.progress import get_logger
from pretrain.evaluation.metrics import chance_levels, leaf_task_items
from pretrain.evaluation.rc_bpb import add_rc_bpb_to_all

log = get_logger("pretrain.eval")
SELF_CHECK_REQUESTS = 8  # requests scored both ways at a run's first evaluation
PROGRESS_BAR = "Running loglikelihood requests"  # lm-eval's own label for these requests


def unreachable_error(tasks: list[str], exc: BaseException) -> PretrainError:
    """A task's dataset lives on the Hub and could not be fetched (offline, no network, DNS, proxy)."""
    return PretrainError(
        f"lm-eval tasks {', '.join(tasks)}: a dataset could not be fetched from the Hub ({network_reason(exc)}). "
        "Run once with network access (HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0) to fill the datasets cache, "
        "or evaluate local tasks (eval.local_tasks, or the built-in val_bpb / stdlib_cloze)"
    )


def quiet_lm_eval() -> None:
    # per-request truncation notices and INFO chatter would drown the training log
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def compile_templates_once() -> None:
    """lm-eval renders every doc's text, target and choices from Jinja templates and compiles the template
    again for each doc (`utils.apply_template`): at each in-loop evaluation of the tiny recipe's cloze that is 200
    compilations of the same two strings, 60 ms of a 480 ms evaluation. Keep the compiled templates."""
    from lm_eval import utils

    env = utils.env
    if getattr(env, "_pretrain_compiled", None) is not None:
        return
    compiled: dict[str, object] = {}
    compile_template = env.from_string

    def from_string(source, *args, **kwargs):
        if args or kwargs or not isinstance(source, str):  # globals / a template class: compile as asked
            return compile_template(source, *args, **kwargs)
        template = compiled.get(source)
        if template is None:
            template = compiled[source] = compile_template(source)
        return template

    env.from_string = from_string
    env._pretrain_compiled = compiled


def task_manager(include_dir: Path, tasks: list[str], local: list[str]):
    from lm_eval.tasks import TaskManager

    # indexing lm-eval's ~10k bundled tasks takes ~13 s: only when a Hub task name is asked for
    need_defaults = bool(set(tasks) - set(local))
    return TaskManager(include_defaults=need_defaults, include_path=str(include_dir))


def item_scores(results: dict) -> dict[str, dict[str, list[float]]]:
    """{task: {metric: each document's score, in document order}} from lm-eval's logged samples: what a paired
    test between two evaluations of the same documents compares (regressions.py). Metrics whose per-document
    value is not a number (a perplexity keeps (log-likelihood, length) pairs to aggregate) are left out."""
    out: dict[str, dict[str, list[float]]] = {}
    for task, samples in (results.get("samples") or {}).items():
        ordered = sorted(samples, key=lambda sample: sample["doc_id"])
        names = ordered[0].get("metrics", []) if ordered else []
        scores = {}
        for name in names:
            values = [sample.get(name) for sample in ordered]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                scores[name] = [float(v) for v in values]
        if scores:
            out[task] = scores
    return out


def flatten(results: dict) -> dict[str, float]:
    """lm-eval's {"results": {task: {"acc,none": x, ...}}} -> {"eval/task/acc": x} (stderr dropped)."""
    flat = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            if key in ("alias", "sample_len") or "stderr" in key or not isinstance(value, int | float):
                continue
            flat[f"eval/{task}/{key.split(',')[0]}"] = float(value)
    return flat


def evaluate_checkpoint(
    checkpoint: Path,
    include_dir: Path,
    tasks: list[str],
    local: list[str],
    limit: int | None,
    batch_size: int,
    num_fewshot: int | None,
    rc_bpb: bool = False,
) -> dict:
    """Same call the `lm_eval --model hf --model_args pretrained=CKPT` CLI makes, so numbers match it; with
    `rc_bpb` the task objects are built here and given the `rc_bpb` metric (the other metrics unchanged)."""
    import lm_eval
    import torch
    from lm_eval.tasks import get_task_dict

    quiet_lm_eval()
    compile_templates_once()
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the CLI equivalent needs `--device cpu` on CPU
    try:
        manager = task_manager(include_dir, tasks, local)
        to_run: list = list(tasks)
        if rc_bpb:  # group scores are not recomputed: the leaf tasks run, each with rc_bpb
            to_run = [task for _, task in leaf_task_items(get_task_dict(tasks, manager))]
            add_rc_bpb_to_all(to_run)
        return lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(checkpoint)},
            tasks=to_run,
            limit=limit,
            batch_size=batch_size,
            num_fewshot=num_fewshot,
            log_samples=True,  # each document's score: regressions.py pairs them across checkpoints
            device=device,
            task_manager=manager,
        )
    except (KeyError, ValueError) as exc:
        raise PretrainError(f"lm-eval could not run tasks {tasks} on {checkpoint}: {exc}") from None
    except NETWORK_ERRORS as exc:
        raise unreachable_error(tasks, exc) from None


def checkpoint_chance_levels(
    include_dir: Path, tasks: list[str], local: list[str], limit: int | None
) -> dict[str, float]:
    """Chance levels of the multiple-choice tasks `evaluate_checkpoint` ran (their datasets are cached by then)."""
    from lm_eval.tasks import get_task_dict

    try:
        return chance_levels(get_task_dict(tasks, task_manager(include_dir, tasks, local)), limit)
    except NETWORK_ERRORS as exc:
        raise unreachable_error(tasks, exc) from None
