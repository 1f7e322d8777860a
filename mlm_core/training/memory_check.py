"""Will a run fit in memory? An estimate made before anything large is allocated, against what is free."""

from __future__ import annotations

import torch

from mlm_core.system.container_limits import free_memory_bytes

BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments
# Fitted to the memory two real training steps added on 2 CPU cores (fp32): starter at batch 16/64/256 with blocks of
# 128, estimate 0.24/0.89/3.48 GiB vs 0.20/0.71/3.01 measured; DistilRoBERTa shape at batch 4 and 16 (blocks of 128)
# and 8 (blocks of 512), 1.71/3.15/6.14 GiB vs 1.78/2.69/5.51 measured.
ACTIVATION_FLOATS_PER_UNIT = 45  # kept per token, hidden unit and layer for the backward pass
ATTENTION_COPIES = 2.5  # attention-score tensors kept per head, layer and sequence (block x block floats each)
LOGIT_COPIES = 3  # logits, their softmax and its gradient at each labelled position
USABLE_SHARE = 0.9  # of the free memory a run may plan to take


def training_bytes(model: torch.nn.Module, batch_size: int, block_size: int, labelled_share: float) -> int:
    """Bytes a training step of `batch_size` blocks of `block_size` tokens adds to a loaded model, roughly."""
    config = model.config
    hidden = _first(config, "hidden_size", "n_embd", "dim", default=768)
    layers = _first(config, "num_hidden_layers", "n_layer", "n_layers", default=12)
    heads = _first(config, "num_attention_heads", "n_head", "n_heads", default=12)
    vocab = _first(config, "vocab_size", default=50_000)
    params = sum(p.numel() for p in model.parameters())
    per_token = ACTIVATION_FLOATS_PER_UNIT * hidden * layers + LOGIT_COPIES * labelled_share * vocab
    per_sequence = ATTENTION_COPIES * heads * block_size**2 * layers
    floats = batch_size * (block_size * per_token + per_sequence)
    return int(params * BYTES_PER_PARAM + 4 * floats)


def free_bytes(device: torch.device) -> int | None:
    """Memory free for a run on the device: the GPU's free memory, or what the host and the container's cgroup limit
    leave (the smaller)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return free_memory_bytes()


def check_fits(
    model: torch.nn.Module, batch_size: int, block_size: int, labelled_share: float, device: torch.device
) -> int:
    """The estimate in bytes; ValueError in plain words when it is more than the device has free."""
    need, free = training_bytes(model, batch_size, block_size, labelled_share), free_bytes(device)
    if free is not None and need > USABLE_SHARE * free:
        raise ValueError(
            f"batch_size: training {batch_size} blocks of {block_size} tokens at once needs about "
            f"{need / 2**30:.1f} GiB of memory, and this machine has {free / 2**30:.1f} GiB free; "
            "use a smaller batch size or block size"
        )
    return need


def _first(config, *names: str, default: int) -> int:
    """The first of several config attributes that is set (model families name them differently)."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default
