"""Concurrent forward passes on one model merged into one: what lets many visitors' fill-mask requests share the
model's time instead of queueing behind each other.

Every inference forward of a masked LM goes through `masked_logits`. A call that finds the model idle runs at once,
alone, as it always did; calls that come while a forward runs wait, and the next of them runs all that have gathered
in one padded batch (at most `MAX_TOKENS` tokens), then hands each caller its rows. Nothing waits for company: one
visitor's request costs what it did, and twenty at once cost about one batch each round.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

from mlm_core.models import heads

MAX_TOKENS = 16_384  # rows x block of one merged forward: bounds the memory a crowd can make it take


class _Call:
    """One caller's forward: its inputs, then its logits or its error."""

    __slots__ = ("input_ids", "positions", "logits", "error", "done")

    def __init__(self, input_ids: torch.Tensor, positions: torch.Tensor):
        self.input_ids, self.positions = input_ids, positions
        self.logits: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.done = False


class ForwardBatcher:
    """The merged forwards of one model (see the module's docstring)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._ready = threading.Condition()
        self._waiting: list[_Call] = []
        self._busy = False
        self.forwards = 0  # merged forwards run, and the calls they served: what the tests and benchmark read
        self.calls = 0

    def masked_logits(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`heads.masked_logits` of `input_ids` and bool `positions` [rows, block], in one forward with whatever
        other calls are waiting: [positions selected, vocab]. What the forward raises passes to every caller in it."""
        call = _Call(input_ids, positions)
        with self._ready:
            self._waiting.append(call)
            while not call.done:
                if self._busy:
                    self._ready.wait()
                    continue
                self._busy, batch = True, self._take()
                self._ready.release()
                try:
                    self._run(batch)
                finally:
                    self._ready.acquire()
                    self._busy = False
                    self._ready.notify_all()
        if call.error is not None:
            raise call.error
        return call.logits

    def _take(self) -> list[_Call]:
        """The waiting calls, oldest first, as many as fit MAX_TOKENS (one at least); the rest wait."""
        batch, rows, block = [], 0, 0
        for call in self._waiting:
            grown = (rows + len(call.input_ids)) * max(block, call.input_ids.shape[1])
            if batch and grown > MAX_TOKENS:
                break
            batch.append(call)
            rows, block = rows + len(call.input_ids), max(block, call.input_ids.shape[1])
        del self._waiting[: len(batch)]
        return batch

    def _run(self, batch: list[_Call]) -> None:
        """One forward for the batch's calls, padded on the right to its longest block (the padding masked out)."""
        try:
            if len(batch) == 1:
                call = batch[0]
                call.logits = heads.masked_logits(self.model, call.input_ids, call.positions)
            else:
                block = max(call.input_ids.shape[1] for call in batch)
                pad = getattr(self.model.config, "pad_token_id", None) or 0
                ids = torch.cat([_padded(c.input_ids, block, pad) for c in batch])
                positions = torch.cat([_padded(c.positions, block, False) for c in batch])
                attention = torch.cat([_padded(torch.ones_like(c.input_ids), block, 0) for c in batch])
                logits = heads.masked_logits(self.model, ids, positions, attention)
                counts = [int(call.positions.sum()) for call in batch]
                for call, rows in zip(batch, logits.split(counts)):
                    call.logits = rows
            self.forwards, self.calls = self.forwards + 1, self.calls + len(batch)
        except BaseException as error:  # each caller gets it, as its own forward would have raised it
            for call in batch:
                call.error = error
        for call in batch:
            call.done = True


def _padded(values: torch.Tensor, block: int, fill) -> torch.Tensor:
    """`values` [rows, length] padded on the right with `fill` to [rows, block]."""
    if values.shape[1] == block:
        return values
    return torch.cat([values, values.new_full((len(values), block - values.shape[1]), fill)], dim=1)


_batchers: weakref.WeakKeyDictionary[nn.Module, ForwardBatcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def batcher(model: nn.Module) -> ForwardBatcher:
    """The model's batcher (made on first use, gone with the model)."""
    with _batchers_lock:
        found = _batchers.get(model)
        if found is None:
            found = _batchers[model] = ForwardBatcher(model)
        return found


def masked_logits(model: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`heads.masked_logits` [positions selected, vocab] of `input_ids` and bool `positions` [rows, block], merged
    with other threads' concurrent calls on the same model into one forward."""
    return batcher(model).masked_logits(input_ids, positions)
