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
    """One evaluation: mean token loss (nats), and the share of hidden words (masked LM: a word is right when every
    hidden piece of it is) or next tokens (causal LM) guessed right, first and among the top TOP_K."""

    loss: float
    top1: float
    top5: float


class Evaluator:
    """Scores the same held-out positions at every evaluation, so all measurements of a run compare like with like.

    The sample is the same for every run on the same data (the first `MAX_EVAL_BLOCKS` held-out blocks of a seeded
    order, masked by a seeded batcher), so base and final measurements of two runs compare too; evaluations during
    a run score only its first `size` blocks, as many as the run can afford.
    """

    def __init__(
        self,
        batcher,
        blocks,
        word_starts,
        size: int,
        batch_size: int,
        seed: int,
        own_share: bool = False,
        starts_table: torch.Tensor | None = None,
    ):
        """`word_starts` (bool [n, block], or None) or else `starts_table` (bool [vocab]: which tokens start a word)
        say where words start, for word accuracy; with neither (a causal LM), accuracy counts tokens. `own_share`:
        each process holds its own eval blocks (sharded data) and scores all of them. ValueError in plain words when
        the sample hides no token, so that nothing could be measured (a perplexity of 1.00 would mean nothing)."""
        whole = min(len(blocks), MAX_EVAL_BLOCKS)
        rows = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed))[:whole]
        sample = blocks[rows]
        starts = (
            word_starts[rows] if word_starts is not None else None if starts_table is None else starts_table[sample]
        )
        self.batches = fixed_eval_batches(batcher, sample, None if word_starts is None else starts, batch_size)
        self.words = [
            None if starts is None else _word_ids(starts[i : i + batch_size]) for i in range(0, whole, batch_size)
        ]
        self.quick = max(1, math.ceil(min(size, whole) / batch_size))  # batches an evaluation during the run scores
        self.size = min(whole, self.quick * batch_size)
        self.own_share = own_share
        self.labelled = sum(batch.count for batch in self.batches[: self.quick])  # tokens each evaluation scores
        if self.labelled == 0 and not own_share:
            raise ValueError(
                f"eval_fraction: the held-out sample ({self.size:,} blocks of {blocks.shape[-1]} tokens) "
                "hides no token to measure; hold out more text, or raise mlm_probability or "
                "block_size"
            )

    @property
    def whole_size(self) -> int:
        """Blocks in the whole sample (base and final measurements)."""
        return sum(len(batch.input_ids) for batch in self.batches)

    def __call__(
        self, objective, accelerator, stop: threading.Event, whole: bool = False
    ) -> tuple[Measurement, Measurement | None] | None:
        """(on the run's part of the sample, on the whole sample when `whole` else None): loss and accuracy of the
        model now, batches shared among processes; None if stopped meanwhile."""
        device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
        objective = accelerator.unwrap_model(objective)  # no gradients to synchronise; DDP hides labelled_logits
        sums = torch.zeros(2, 5, device=device)  # [quick part, rest] x (loss, tokens, words, top-1 and top-k hits)
        objective.eval()
        with torch.no_grad():
            for i, (batch, words) in enumerate(zip(self.batches, self.words)):
                if i == self.quick and not whole:
                    break
                if stop.is_set():
                    return None
                if self.own_share or i % world == rank:
                    words = None if words is None else words.to(device)
                    sums[int(i >= self.quick)] += torch.stack(_scores(objective, batch.to(device), words))
        quick, rest = accelerator.reduce(sums).tolist()
        return _measurement(quick), _measurement([a + b for a, b in zip(quick, rest)]) if whole else None


def _measurement(sums: list[float]) -> Measurement:
    """A measurement from (loss, tokens, words, top-1 words, top-k words) sums."""
    loss, tokens, words, top1, top5 = sums
    return Measurement(loss=loss / max(tokens, 1.0), top1=top1 / max(words, 1.0), top5=top5 / max(words, 1.0))


def _word_ids(starts: torch.Tensor) -> torch.Tensor:
    """Flat word numbers [batch * block] from word-start flags [batch, block] (a block starts a word)."""
    starts = starts.clone()
    starts[:, 0] = True
    return starts.reshape(-1).long().cumsum(0) - 1


def _scores(objective, batch, words: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(loss sum, labelled tokens, words, top-1 words, top-k words) of one batch, as 0-d tensors on its device: a
    word (of `words`, flat word numbers [batch * block]; each token its own word without them) counts as guessed
    when all its labelled tokens are."""
    logits, targets = objective.labelled_logits(batch.input_ids, batch.labels, batch.positions, batch.targets)
    keep = targets.ne(IGNORE)  # [n]: all True where the head ran at the labelled positions only
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
    best = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices  # [n, k]
    hits = best.eq(targets[:, None])
    if words is None:
        owner = torch.arange(len(targets), device=targets.device)
    else:  # n is every position, or the labelled ones only (`positions`)
        owner = words if len(targets) == words.numel() else words[batch.positions]
    _, word = owner[keep].unique(return_inverse=True)
    n_words = int(word.max()) + 1 if word.numel() else 0
    misses = torch.zeros(2, n_words, device=targets.device)
    misses[0].index_add_(0, word, (~hits[keep, 0]).float())
    misses[1].index_add_(0, word, (~hits[keep].any(-1)).float())
    right = misses.eq(0).sum(-1).float()
    return loss, keep.sum().float(), torch.tensor(float(n_words), device=targets.device), right[0], right[1]
