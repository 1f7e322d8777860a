"""Achieved FLOP/s of our training step against a matmul peak measured on the same device."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils import flop_counter

from mlm_core.config import TrainConfig
from mlm_core.models.loading import default_device
from mlm_core.training.batches import batcher_for
from mlm_core.training.objective import LMObjective
from mlm_core.training.setup import load_inputs

MATMUL_SIZE = 4096


def matmul_peak(repeats: int = 5) -> dict:
    """Best FLOP/s of a square matmul in the precision training uses here (bf16 on GPU, fp32 on CPU)."""
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=dtype)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=dtype)
    inner = 20 if device.type == "cuda" else 1
    seconds = []
    for _ in range(repeats + 1):
        _sync(device)
        started = time.perf_counter()
        for _ in range(inner):
            a @ b
        _sync(device)
        seconds.append((time.perf_counter() - started) / inner)
    best = min(seconds[1:])
    return {
        "flops_per_s": 2 * MATMUL_SIZE**3 / best,
        "dtype": str(dtype).removeprefix("torch."),
        "size": MATMUL_SIZE,
        "median_flops_per_s": 2 * MATMUL_SIZE**3 / statistics.median(seconds[1:]),
    }


def step_flops(config: TrainConfig, batches: int = 3) -> float:
    """FLOPs our objective's forward and backward execute per step (LM head at masked positions only), averaged;
    ValueError in plain words when the model or data cannot be used."""
    setup = load_inputs(config, None, lambda _: None)
    device = default_device()
    objective = LMObjective(setup.model.to(device), setup.task).train()
    masker = batcher_for(
        setup.task, setup.tokenizer, config.mlm_probability, config.whole_word_masking, seed=config.seed
    )
    counts = []
    for i in range(batches):
        batch = masker(setup.data.train[i * config.batch_size : (i + 1) * config.batch_size]).to(device)
        with flop_counter.FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
            summed = objective(batch.input_ids, batch.labels, batch.positions, batch.targets)
            summed.backward()
        counts.append(counter.get_total_flops())
        objective.zero_grad(set_to_none=True)
    return statistics.mean(counts)


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """FLOPs of the CPU flash-attention backward, counted as for the GPU kernels."""
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's counter knows the GPU attention kernels but not the CPU one; without this, attention would count as 0.
_aten = torch.ops.aten
_CPU_ATTENTION = {
    _aten._scaled_dot_product_flash_attention_for_cpu: flop_counter.sdpa_flop,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}
