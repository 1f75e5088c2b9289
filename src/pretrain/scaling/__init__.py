"""Compute planning: parameters, tokens, FLOPs, Chinchilla-optimal sizes, memory, GPU-hours (`pretrain plan`)."""
