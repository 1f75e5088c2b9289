"""Training FLOPs per token (6 x matmul weights incl. the head + attention's 12·L·h·s), device peaks, and a
compute budget given in FLOPs or in GPU-hours."""

from __future__ import annotations

import pytest
from transformers import GPT2Config, LlamaConfig, PretrainedConfig

from pretrain.core.errors import PretrainError
from pretrain.scaling.flops import (
    GPU_SPECS,
    budget_flops,
    device_peak_flops,
    flops_per_token,
    gpu_spec,
    training_flops,
)


def test_gpu_names_are_case_and_underscore_insensitive():
    assert gpu_spec("H100") is GPU_SPECS["h100"]
    assert gpu_spec("a100_40gb") is GPU_SPECS["a100-40gb"]


def test_an_unknown_gpu_is_an_error_listing_the_known_ones_sorted():
    with pytest.raises(PretrainError) as info:
        gpu_spec("tpu9000")
    assert str(info.value) == f"unknown GPU 'tpu9000'; known: {', '.join(sorted(GPU_SPECS))}"


def test_every_known_gpu_has_a_dense_bf16_peak_and_memory():
    for spec in GPU_SPECS.values():
        assert spec.bf16_tflops > 0 and spec.memory_gb > 0 and spec.name


@pytest.mark.parametrize(
    ("device", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA L4", "l4"),
        ("L4", "l4"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("AMD Instinct MI300X", "mi300x"),
    ],
)
def test_a_cuda_device_name_gives_its_peak_in_flops_per_second(device, key):
    assert device_peak_flops(device) == GPU_SPECS[key].bf16_tflops * 1e12


@pytest.mark.parametrize("device", [None, "", "Tesla T4", "cpu"])
def test_an_unknown_device_or_the_cpu_has_no_peak(device):
    assert device_peak_flops(device) is None


def test_flops_per_token_count_the_head_and_attention():
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=512)
    non_embedding = 100_000
    expected = 6.0 * (non_embedding + 512 * 64) + 12.0 * 2 * 64 * 128
    assert flops_per_token(config, non_embedding, seq_len=128) == expected


def test_longer_sequences_cost_more_attention_flops_per_token():
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=512)
    assert flops_per_token(config, 1000, 256) - flops_per_token(config, 1000, 128) == 12.0 * 2 * 64 * 128


def test_configs_naming_width_and_depth_otherwise_are_read_too():
    config = GPT2Config(n_embd=32, n_layer=3, vocab_size=100)
    assert flops_per_token(config, 5000, 16) == 6.0 * (5000 + 100 * 32) + 12.0 * 3 * 32 * 16


def test_a_config_without_a_width_is_an_error():
    config = PretrainedConfig(vocab_size=10)
    with pytest.raises(ValueError, match=r"has none of \('hidden_size', 'n_embd', 'd_model'\)"):
        flops_per_token(config, 100, 16)


def test_training_flops_are_flops_per_token_times_tokens():
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=512)
    assert training_flops(config, 1000, 128, tokens=10_000) == 10_000 * flops_per_token(config, 1000, 128)


def test_a_flop_budget_is_taken_as_given():
    assert budget_flops(1e21, None, None, 0.4) == 1e21
    assert isinstance(budget_flops(10**21, None, None, 0.4), float)
    assert budget_flops(1e21, 99.0, "h100", 0.4) == 1e21  # FLOPs win over GPU-hours


def test_a_gpu_hour_budget_is_the_gpus_peak_at_the_mfu_for_that_long():
    assert budget_flops(None, 10.0, "a100", 0.5) == pytest.approx(10 * 3600 * 312e12 * 0.5)


@pytest.mark.parametrize(("gpu_hours", "gpu"), [(None, None), (10.0, None), (10.0, ""), (None, "h100")])
def test_a_budget_needs_flops_or_gpu_hours_with_a_gpu(gpu_hours, gpu):
    with pytest.raises(
        PretrainError, match=r"a budget needs --budget-flops C, or --budget-gpu-hours H with --gpu"
    ):
        budget_flops(None, gpu_hours, gpu, 0.4)
