"""The training loss, computing the masked LM's vocabulary head only where a label is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlm_core.models.heads import masked_logits, split_masked_lm
from mlm_core.tasks import IGNORE, MASKED, Task


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
        """(loss sum, labelled token count), both 0-d tensors, of one batch of full blocks (no padding):
        `input_ids` and `labels` [batch, block]."""
        if not self.head_only:
            count = self.task.targets(labels).ne(IGNORE).sum()
            loss = self.model(input_ids=input_ids, labels=labels).loss
            return (loss * count if count else loss.new_zeros(())), count
        logits, targets = self.labelled_logits(input_ids, labels)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
        return loss, targets.ne(IGNORE).sum()

    def labelled_logits(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [n, vocab], true tokens [n]) from `input_ids` and `labels` [batch, block]: n is the labelled
        positions of a masked LM whose head runs apart, else every position (batch * block), where positions
        without a label have the target IGNORE."""
        if self.parts is not None:  # the vocabulary head only where a label is
            selected = labels.ne(IGNORE)
            return masked_logits(self.parts, input_ids, selected), labels[selected]
        logits = self.model(input_ids=input_ids).logits
        return logits.reshape(-1, logits.shape[-1]), self.task.targets(labels).reshape(-1)
