"""The training loss, computing the masked LM's vocabulary head only where a label is."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .tasks import IGNORE, MASKED, Task


def split_masked_lm(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(encoder, head) of a masked LM, so the head can run on selected hidden states only; None if unknown."""
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


def masked_logits(parts, input_ids: torch.Tensor, positions: torch.Tensor,
                  attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Vocabulary logits at the True entries of `positions` only: [n_selected, vocab]."""
    encoder, head = parts
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return head(hidden[positions])


class LMObjective(nn.Module):
    """Sum of token losses of a batch and how many tokens carry a label.

    Returning the sum (not the mean) lets gradient accumulation weight every labelled token equally.
    `head_only=False` makes the model compute the loss itself, over full logits, as the guides' Trainer does.
    """

    def __init__(self, model: nn.Module, task: Task, head_only: bool = True):
        super().__init__()
        self.model = model
        self.task = task
        self.head_only = head_only
        self.parts = split_masked_lm(model) if task is MASKED else None

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, labelled token count) of one batch of full blocks (no padding)."""
        if not self.head_only:
            count = self.task.targets(labels).ne(IGNORE).sum()
            loss = self.model(input_ids=input_ids, labels=labels).loss
            return (loss * count if count else loss.new_zeros(())), count
        logits, targets = self.labelled_logits(input_ids, labels)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
        return loss, targets.ne(IGNORE).sum()

    def labelled_logits(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [n, vocab], true tokens [n]); positions without a label have the target IGNORE."""
        if self.parts is not None:  # the vocabulary head only where a label is
            selected = labels.ne(IGNORE)
            return masked_logits(self.parts, input_ids, selected), labels[selected]
        logits = self.model(input_ids=input_ids).logits
        return logits.reshape(-1, logits.shape[-1]), self.task.targets(labels).reshape(-1)
