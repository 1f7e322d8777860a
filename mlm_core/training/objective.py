"""The training loss, computing the masked LM's vocabulary head only where a label is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlm_core.models.heads import full_logits, split_masked_lm
from mlm_core.tasks import IGNORE, MASKED, Task


class LMObjective(nn.Module):
    """Sum of token losses of a batch, computed without making the host wait for the device.

    Returning the sum (not the mean) lets gradient accumulation weight every labelled token equally: the caller
    divides by the batch's `count`, known on the host. `head_only=False` makes the model compute the loss itself,
    over full logits, as the guides' Trainer does.
    """

    def __init__(self, model: nn.Module, task: Task, head_only: bool = True):
        super().__init__()
        self.model = model
        self.task = task
        self.head_only = head_only
        self.parts = split_masked_lm(model) if task is MASKED else None

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        positions: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss sum (0-d tensor, nats) of one batch of full blocks (no padding): `input_ids` and `labels`
        [batch, block]; `positions` and `targets` [n_labelled] as `Batch` carries them (optional)."""
        if not self.head_only:
            loss = self.model(input_ids=input_ids, labels=labels).loss  # mean over labelled tokens; NaN over none
            count = self.task.targets(labels).ne(IGNORE).sum()
            return torch.where(count > 0, loss * count, loss.new_zeros(()))
        logits, targets = self.labelled_logits(input_ids, labels, positions, targets)
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")

    def labelled_logits(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        positions: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [n, vocab], true tokens [n]) from `input_ids` and `labels` [batch, block]: n is the labelled
        positions of a masked LM whose head runs apart (given as `positions`/`targets` [n], else found from
        `labels`), else every position (batch * block), where positions without a label have the target IGNORE."""
        if self.parts is not None:  # the vocabulary head only where a label is
            if positions is None:
                positions = labels.reshape(-1).ne(IGNORE).nonzero().squeeze(1)
                targets = labels.reshape(-1)[positions]
            encoder, head = self.parts
            hidden = encoder(input_ids=input_ids).last_hidden_state  # [batch, block, hidden]
            return head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)), targets
        logits = full_logits(self.model, input_ids)  # [batch, block, vocab]
        return logits.reshape(-1, logits.shape[-1]), self.task.targets(labels).reshape(-1)
