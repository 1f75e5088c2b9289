"""Running lm-eval: one function for saved checkpoints (the CLI's exact path) and one for the live model."""

from __future__ import annotations

import logging
from pathlib import Path

from pretrain.core.errors import PretrainError
from pretrain.core.network import NETWORK_ERRORS, network_reason
from pretrain.evaluation.metrics import chance_levels


def _unreachable(tasks: list[str], exc: BaseException) -> PretrainError:
    """A task's dataset lives on the Hub and could not be fetched (offline, no network, DNS, proxy)."""
    return PretrainError(
        f"lm-eval tasks {', '.join(tasks)}: a dataset could not be fetched from the Hub ({network_reason(exc)}). "
        "Run once with network access (HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0) to fill the datasets cache, "
        "or evaluate local tasks (eval.local_tasks, or the built-in val_bpb / stdlib_cloze)"
    )


def _quiet() -> None:
    # per-request truncation notices and INFO chatter would drown the training log
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _task_manager(include_dir: Path, tasks: list[str], local: list[str]):
    from lm_eval.tasks import TaskManager

    # indexing lm-eval's ~10k bundled tasks takes ~13 s: only when a Hub task name is asked for
    need_defaults = bool(set(tasks) - set(local))
    return TaskManager(include_defaults=need_defaults, include_path=str(include_dir))


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
) -> dict:
    """Same call the `lm_eval --model hf --model_args pretrained=CKPT` CLI makes, so numbers match it."""
    import lm_eval
    import torch

    _quiet()
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the CLI equivalent needs `--device cpu` on CPU
    try:
        return lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(checkpoint)},
            tasks=tasks,
            limit=limit,
            batch_size=batch_size,
            num_fewshot=num_fewshot,
            log_samples=False,
            device=device,
            task_manager=_task_manager(include_dir, tasks, local),
        )
    except (KeyError, ValueError) as exc:
        raise PretrainError(f"lm-eval could not run tasks {tasks} on {checkpoint}: {exc}") from None
    except NETWORK_ERRORS as exc:
        raise _unreachable(tasks, exc) from None


def checkpoint_chance_levels(
    include_dir: Path, tasks: list[str], local: list[str], limit: int | None
) -> dict[str, float]:
    """Chance levels of the multiple-choice tasks `evaluate_checkpoint` ran (their datasets are cached by then)."""
    from lm_eval.tasks import get_task_dict

    try:
        return chance_levels(get_task_dict(tasks, _task_manager(include_dir, tasks, local)), limit)
    except NETWORK_ERRORS as exc:
        raise _unreachable(tasks, exc) from None


class LiveEvaluation:
    """lm-eval on a model object (no reload from disk); the task dict is built once and reused."""

    def __init__(
        self,
        include_dir: Path,
        tasks: list[str],
        local: list[str],
        limit: int | None,
        batch_size: int,
        num_fewshot: int | None,
        max_length: int,
    ):
        from lm_eval.tasks import get_task_dict

        _quiet()
        try:
            self.task_dict = get_task_dict(tasks, _task_manager(include_dir, tasks, local))
        except NETWORK_ERRORS as exc:
            raise _unreachable(tasks, exc) from None
        if num_fewshot is not None:
            for task in self.task_dict.values():
                if hasattr(task, "set_config"):
                    task.set_config(key="num_fewshot", value=num_fewshot)
        self.limit, self.batch_size, self.max_length = limit, batch_size, max_length
        self.chance = chance_levels(self.task_dict, limit)

    def __call__(self, model, tokenizer) -> dict:
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(
            pretrained=model, tokenizer=tokenizer, batch_size=self.batch_size, max_length=self.max_length
        )
        return evaluate(
            lm=lm, task_dict=self.task_dict, limit=self.limit, log_samples=False, verbosity="WARNING"
        )
