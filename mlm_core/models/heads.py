"""A masked LM split into encoder and vocabulary head, so the head can run at chosen positions only."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def split_masked_lm(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(encoder, head) of a masked LM, so the head can run on selected hidden states only (hidden states [n, hidden]
    to logits [n, vocab]); None if unknown."""
    encoder = model.base_model
    if encoder is model:
        return None
    for name in ("lm_head", "cls", "predictions"):  # RoBERTa family, BERT family, ALBERT
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return encoder, head
    if isinstance(getattr(model, "head", None), nn.Module) and isinstance(getattr(model, "decoder", None), nn.Module):
        return encoder, lambda h: model.decoder(model.head(h))  # ModernBERT
    if hasattr(model, "vocab_projector"):  # DistilBERT spreads its head over four modules
        return encoder, lambda h: model.vocab_projector(
            model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
    return None


def masked_logits(model: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor,
                  attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Vocabulary logits at the True entries of `positions` only: [n_selected, vocab], in row-major order of the
    positions; `input_ids`, bool `positions` and `attention_mask` are [batch, block]. The head runs at those
    positions only where `split_masked_lm` knows it; any other masked LM gives its full logits, then selected."""
    parts = split_masked_lm(model)
    if parts is None:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[positions]
    encoder, head = parts
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return head(hidden[positions])
