"""Batches of blocks with their labels: masked on the fly for MLM, inputs as labels for CLM."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .modeling import MLM


@dataclass(frozen=True)
class Batch:
    """Model inputs and labels of one batch."""

    input_ids: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        """The batch on another device."""
        return Batch(self.input_ids.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))


class Masker:
    """Makes labelled batches: MLM masking by transformers' collator with its own seeded generator."""

    def __init__(self, tokenizer, task: str, mlm_probability: float, whole_word: bool, seed: int):
        self.task = task
        self.generator = torch.Generator().manual_seed(seed)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.collator = None
        if task == MLM:
            from transformers import DataCollatorForLanguageModeling

            with warnings.catch_warnings():  # whole-word masking warns that it replaces by <mask> only
                warnings.simplefilter("ignore")
                self.collator = DataCollatorForLanguageModeling(
                    tokenizer, mlm=True, mlm_probability=mlm_probability, whole_word_mask=whole_word)
            self.collator.generator = self.generator

    def __call__(self, blocks: torch.Tensor, word_starts: torch.Tensor | None = None) -> Batch:
        """A labelled batch from token blocks [batch, block_size] (and, for whole words, their word-start flags)."""
        if self.collator is None:
            return Batch(blocks, blocks.clone())
        special = torch.isin(blocks, self.special_ids)
        offsets = None if word_starts is None else word_offsets(word_starts)
        inputs, labels = self.collator.torch_mask_tokens(
            blocks.clone(), special_tokens_mask=special, offset_mapping=offsets)
        return Batch(inputs, labels)

    def state(self) -> torch.Tensor:
        """The masking generator's state, for checkpoints."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore the masking generator from a checkpoint."""
        self.generator.set_state(state)


def word_offsets(word_starts: torch.Tensor) -> torch.Tensor:
    """Stand-in character offsets [batch, block_size, 2] from word-start flags: token t starts where token t-1
    ends unless it starts a word. The collator reads only that comparison (and special tokens), so its whole-word
    masks, and the random draws behind them, are those that real offsets give."""
    position = word_starts.to(torch.long).cumsum(dim=1)
    return torch.stack([position, position], dim=-1)


def fixed_eval_batches(masker_args: dict, blocks, word_starts, batch_size: int, seed: int) -> list[Batch]:
    """The eval blocks (and word-start flags) masked once with a fixed seed, so every evaluation scores the same
    positions."""
    masker = Masker(seed=seed, **masker_args)
    return [masker(blocks[i : i + batch_size], None if word_starts is None else word_starts[i : i + batch_size])
            for i in range(0, len(blocks), batch_size)]


def epoch_batches(n_blocks: int, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world: int = 1) -> Iterator[torch.Tensor]:
    """Block indices of each batch this process trains on in an epoch; the order depends on (seed, epoch) only."""
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + epoch))
    batches = list(order.split(batch_size))
    usable = len(batches) - len(batches) % world  # every process must take the same number of steps
    yield from batches[rank:usable:world]
