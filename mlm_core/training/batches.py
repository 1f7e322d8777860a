"""Batches of blocks with their labels: masked on the fly for masked LMs, inputs as labels for causal LMs."""

from __future__ import annotations

import functools
import queue
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mlm_core.tasks import IGNORE, MaskedLM, Task


@dataclass(frozen=True)
class Batch:
    """Model inputs and labels of one batch, with what the step needs known on the host before it runs.

    `positions` and `targets` are made with the masks, on the host: the step gathers hidden states at known indices
    (`index_select`) instead of a boolean index whose output size the host would have to wait for.
    """

    input_ids: torch.Tensor  # [batch, block] token ids
    labels: torch.Tensor  # [batch, block] token ids to predict, IGNORE where nothing is
    count: int  # labelled tokens: where the loss counts
    positions: torch.Tensor | None = None  # [count] flat indices (row * block + column) of the labelled tokens
    targets: torch.Tensor | None = None  # [count] the token at each of `positions`

    def to(self, device: torch.device) -> Batch:
        """The batch on another device (asynchronously from pinned memory)."""
        move = functools.partial(torch.Tensor.to, device=device, non_blocking=True)
        return Batch(
            move(self.input_ids),
            move(self.labels),
            self.count,
            None if self.positions is None else move(self.positions),
            None if self.targets is None else move(self.targets),
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory, so that copying it to a GPU overlaps with compute."""
        pin = torch.Tensor.pin_memory
        return Batch(
            pin(self.input_ids),
            pin(self.labels),
            self.count,
            None if self.positions is None else pin(self.positions),
            None if self.targets is None else pin(self.targets),
        )


class CausalBatcher:
    """Causal batches: the inputs are their own labels (the model shifts them)."""

    def __call__(self, blocks: torch.Tensor, word_starts: torch.Tensor | None = None) -> Batch:
        """A labelled batch from token blocks [batch, block_size]: every position but the last predicts the next."""
        return Batch(blocks, blocks.clone(), count=blocks.shape[0] * (blocks.shape[1] - 1))

    def state(self) -> None:
        """Nothing random to save."""

    def set_state(self, state) -> None:
        """Nothing random to restore."""


class Masker:
    """Makes labelled masked-LM batches with transformers' collator and its own seeded generator."""

    def __init__(self, tokenizer, mlm_probability: float, whole_word: bool, seed: int):
        from transformers import DataCollatorForLanguageModeling

        self.generator = torch.Generator().manual_seed(seed)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        with warnings.catch_warnings():  # whole-word masking warns that it replaces by <mask> only
            warnings.simplefilter("ignore")
            self.collator = DataCollatorForLanguageModeling(
                tokenizer, mlm=True, mlm_probability=mlm_probability, whole_word_mask=whole_word
            )
        self.collator.generator = self.generator

    def __call__(self, blocks: torch.Tensor, word_starts: torch.Tensor | None = None) -> Batch:
        """A labelled batch from token blocks [batch, block_size] (and, for whole words, their bool word-start flags
        [batch, block_size])."""
        special = torch.isin(blocks, self.special_ids)
        offsets = None if word_starts is None else word_offsets(word_starts)
        inputs, labels = self.collator.torch_mask_tokens(
            blocks.clone(), special_tokens_mask=special, offset_mapping=offsets
        )
        positions = labels.view(-1).ne(IGNORE).nonzero().squeeze(1)  # on the host, before the step needs it
        return Batch(inputs, labels, count=len(positions), positions=positions, targets=labels.view(-1)[positions])

    def state(self) -> torch.Tensor:
        """The masking generator's state, for checkpoints."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore the masking generator from a checkpoint."""
        self.generator.set_state(state)


def word_offsets(word_starts: torch.Tensor) -> torch.Tensor:
    """Stand-in character offsets [batch, block_size, 2] from word-start flags [batch, block_size]: token t starts
    where token t-1 ends unless it starts a word. The collator reads only that comparison (and special tokens), so
    its whole-word masks, and the random draws behind them, are those that real offsets give."""
    position = word_starts.to(torch.long).cumsum(dim=1)
    return torch.stack([position, position], dim=-1)


def fixed_eval_batches(batcher, blocks: torch.Tensor, word_starts: torch.Tensor | None, batch_size: int) -> list[Batch]:
    """The eval blocks labelled once by a batcher of their own, so every evaluation scores the same positions:
    blocks (and word starts) [n, block] in, batches of [batch_size, block] out (the last may be smaller)."""
    return [
        batcher(blocks[i : i + batch_size], None if word_starts is None else word_starts[i : i + batch_size])
        for i in range(0, len(blocks), batch_size)
    ]


def epoch_batches(
    n_blocks: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1
) -> Iterator[torch.Tensor]:
    """Block indices [batch_size] (the last may be fewer) of each batch this process trains on in an epoch; the order
    depends on (seed, epoch) only."""
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + epoch))
    batches = list(order.split(batch_size))
    usable = len(batches) - len(batches) % world  # every process must take the same number of steps
    yield from batches[rank:usable:world]


def batcher_for(task: Task, tokenizer, mlm_probability: float, whole_word: bool, seed: int) -> Masker | CausalBatcher:
    """How `task` labels blocks: a callable from blocks `[batch, block]` to a `Batch`, reproducible from `seed`."""
    if isinstance(task, MaskedLM):
        return Masker(tokenizer, mlm_probability=mlm_probability, whole_word=whole_word, seed=seed)
    return CausalBatcher()


class Prefetcher:
    """Labels the next batches on a thread of its own while the current step runs (and pins them for a GPU).

    Batches come out in the order of `indices`, masked by `batcher` exactly as without prefetching. `state` is the
    batcher's random state after the last batch taken out (not after the ones masked ahead): what a checkpoint saves.
    """

    def __init__(self, batcher, blocks, word_starts, indices: list[torch.Tensor], depth: int = 2, pin: bool = False):
        self.state = batcher.state()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._work, args=(batcher, blocks, word_starts, indices, pin), name="batch-prefetch", daemon=True
        )
        self._thread.start()

    def _work(self, batcher, blocks, word_starts, indices, pin: bool) -> None:
        try:
            for idx in indices:
                if self._closed.is_set():  # a stop, the last step or an error: the rest is not needed
                    return
                batch = batcher(blocks[idx], None if word_starts is None else word_starts[idx])
                self._put((batch.pin_memory() if pin else batch, batcher.state(), None))
        except Exception as error:  # handed to the training thread, which raises it
            self._put((None, None, error))

    def _put(self, item) -> None:
        while not self._closed.is_set():
            try:
                return self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue

    def take(self) -> Batch:
        """The next batch; raises what labelling it raised."""
        batch, state, error = self._queue.get()
        if error is not None:
            raise error
        self.state = state
        return batch

    def close(self) -> None:
        """Stop masking ahead and wait for the thread."""
        self._closed.set()
        self._thread.join()
