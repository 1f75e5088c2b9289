"""Compute planning: parameters, tokens, FLOPs, Chinchilla-optimal sizes, memory, GPU-hours."""

from pretrain.planning.flops import GPU_SPECS, device_peak_flops, flops_per_token, gpu_spec, training_flops

__all__ = [
    "GPU_SPECS",
    "device_peak_flops",
    "flops_per_token",
    "gpu_spec",
    "training_flops",
    "run_plan_command",
]


def run_plan_command(args, recipe):  # replaced by the planner module
    from pretrain.planning.report import run_plan_command as _run

    return _run(args, recipe)
