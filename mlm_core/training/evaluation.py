"""Evaluation on a fixed sample of held-out blocks with fixed masks: loss, perplexity and word accuracy."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from mlm_core.tasks import IGNORE
from mlm_core.training.batches import fixed_eval_batches

EVAL_POINTS = 10  # evaluations in a run when none are asked for, besides the base one: the perplexity plot is a curve
EVAL_SHARE = 0.15  # of a run's compute that those evaluations may take
FORWARD_COST = 1 / 3  # a forward pass costs about a third of a training step's forward and backward
MIN_EVAL_BLOCKS, MAX_EVAL_BLOCKS = 16, 512  # one evaluation stays short on big data
TOP_K = 5


def eval_every(eval_steps: int, total_steps: int) -> int:
    """Steps between evaluations: as asked, or about EVAL_POINTS over the run."""
    return eval_steps or max(1, math.ceil(total_steps / EVAL_POINTS))


def eval_sample_size(eval_blocks: int, total_steps: int, blocks_per_step: int, every: int) -> int:
    """How many held-out blocks each evaluation scores: as many as EVAL_SHARE of the run's compute pays for."""
    evaluations = total_steps // every + 2  # the base, every `every` steps, and the last step
    affordable = EVAL_SHARE * total_steps * blocks_per_step / (evaluations * FORWARD_COST)
    return max(1, min(eval_blocks, MAX_EVAL_BLOCKS, max(MIN_EVAL_BLOCKS, int(affordable))))


@dataclass(frozen=True)
class Measurement:
    """One evaluation: mean token loss (nats) and the share of hidden (or next) tokens guessed right."""

    loss: float
    top1: float
    top5: float


class Evaluator:
    """Scores the same held-out positions at every evaluation, so all measurements of a run compare like with like."""

    def __init__(self, batcher, blocks, word_starts, size: int, batch_size: int, seed: int, own_share: bool = False):
        """`own_share`: each process holds its own eval blocks (sharded data) and scores all of them. ValueError in
        plain words when the sample hides no token, so that nothing could be measured (a perplexity of 1.00 would
        mean nothing)."""
        rows = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed))[:size].sort().values
        self.size, self.own_share = size, own_share
        self.batches = fixed_eval_batches(batcher, blocks[rows], None if word_starts is None else word_starts[rows],
                                          batch_size)
        self.labelled = sum(batch.count for batch in self.batches)  # hidden (or next) tokens each evaluation scores
        if self.labelled == 0 and not own_share:
            raise ValueError(f"eval_fraction: the held-out sample ({len(rows):,} blocks of {blocks.shape[-1]} tokens) "
                             "hides no token to measure; hold out more text, or raise mlm_probability or "
                             "block_size")

    def __call__(self, objective, accelerator, stop: threading.Event) -> Measurement | None:
        """Loss and accuracy of the model now (batches shared among processes); None if stopped meanwhile."""
        device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
        objective = accelerator.unwrap_model(objective)  # no gradients to synchronise; DDP hides labelled_logits
        sums = torch.zeros(4, device=device)  # loss, labelled tokens, top-1 hits, top-k hits
        objective.eval()
        with torch.no_grad():
            for i, batch in enumerate(self.batches):
                if stop.is_set():
                    return None
                if self.own_share or i % world == rank:
                    batch = batch.to(device)
                    sums += torch.stack(_scores(objective, batch))
        loss, count, top1, top5 = accelerator.reduce(sums).tolist()
        count = max(count, 1.0)
        return Measurement(loss=loss / count, top1=top1 / count, top5=top5 / count)


def _scores(objective, batch) -> tuple[torch.Tensor, ...]:
    """(loss sum, labelled tokens, top-1 hits, top-k hits) of one batch, as 0-d tensors on its device."""
    logits, targets = objective.labelled_logits(batch.input_ids, batch.labels, batch.positions, batch.targets)
    keep = targets.ne(IGNORE)  # [n]: all True where the head ran at the labelled positions only
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
    best = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices  # [n, k]
    hits = best.eq(targets[:, None]) & keep[:, None]
    return loss, keep.sum().float(), hits[:, 0].sum().float(), hits.any(-1).sum().float()
