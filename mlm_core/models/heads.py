"""A masked LM split into encoder and vocabulary head, so the head can run at chosen positions only."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its checked split, or None


def split_masked_lm(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(encoder, head) of a masked LM, so the head can run on selected hidden states only (hidden states [n, hidden]
    to logits [n, vocab]); None when the head is not known. A split found by the families' attribute names is
    used only once one probe gives the model's own logits (NeoMME, for one, has an `lm_head` that needs a
    projection first)."""
    if model not in _SPLITS:
        parts = _named_split(model)
        _SPLITS[model] = parts if parts is not None and _gives_model_logits(model, *parts) else None
    return _SPLITS[model]


def _named_split(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(encoder, head) by the attribute names the families use, unchecked; None if none matches."""
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
            model.vocab_layer_norm(model.activation(model.vocab_transform(h)))
        )
    return None


def probe_ids(model: nn.Module) -> torch.Tensor:
    """Eight ordinary token ids [1, 8] that any model reads (ids 5..12, wrapped into its vocabulary)."""
    return torch.arange(5, 13)[None] % model.config.get_text_config().vocab_size


def _gives_model_logits(model: nn.Module, encoder: nn.Module, head: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Whether head(encoder(x)) is the model's logits on a probe of 8 tokens (in eval mode, without gradients)."""
    probe = probe_ids(model).to(next(model.parameters()).device)
    training = model.training
    try:
        with torch.no_grad():
            model.eval()
            whole = model(input_ids=probe).logits[:, : probe.shape[1]]
            split = head(encoder(input_ids=probe).last_hidden_state)
        return whole.shape == split.shape and torch.allclose(whole.float(), split.float(), rtol=1e-3, atol=1e-3)
    except Exception:  # a family whose parts do not run this way: its full logits are used
        return False
    finally:
        model.train(training)


def masked_logits(
    model: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Vocabulary logits at the True entries of `positions` only: [n_selected, vocab], in row-major order of the
    positions; `input_ids`, bool `positions` and `attention_mask` are [batch, block]. The head runs at those
    positions only where `split_masked_lm` knows it; any other masked LM gives its full logits, then selected."""
    parts = split_masked_lm(model)
    if parts is None:
        return full_logits(model, input_ids, attention_mask)[positions]
    encoder, head = parts
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return head(hidden[positions])


def full_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Vocabulary logits at every position: [batch, block, vocab] for `input_ids` [batch, block] (Perceiver IO
    decodes a fixed number of positions, of which the first `block` are the input's)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits[:, : input_ids.shape[1]]
