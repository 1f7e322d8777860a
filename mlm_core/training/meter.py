"""Throughput and ETA over a sliding window of recent steps."""

from __future__ import annotations

import collections
import math
import time


class Meter:
    """Tracks tokens/s and seconds per step over the last `window` steps."""

    def __init__(self, window: int = 20, elapsed_before: float = 0.0):
        self._marks: collections.deque[tuple[float, int]] = collections.deque(maxlen=window + 1)
        self._start = time.perf_counter() - elapsed_before
        self._marks.append((time.perf_counter(), 0))
        self._tokens = 0

    def update(self, tokens: int) -> None:
        """Record a finished step that trained on `tokens` tokens."""
        self._tokens += tokens
        self._marks.append((time.perf_counter(), self._tokens))

    def restart_window(self) -> None:
        """Forget the window, so time spent evaluating or saving does not count as step time."""
        self._marks.clear()
        self._marks.append((time.perf_counter(), self._tokens))

    @property
    def elapsed(self) -> float:
        """Seconds since the run began, including time before a resume."""
        return time.perf_counter() - self._start

    @property
    def tokens_per_s(self) -> float:
        """Recent training throughput, in tokens/s."""
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, steps_left: int) -> float:
        """Seconds until the remaining steps are done, at the recent pace (NaN before the first step)."""
        steps = len(self._marks) - 1
        if steps <= 0:
            return math.nan
        return steps_left * (self._marks[-1][0] - self._marks[0][0]) / steps


def perplexity(loss: float) -> float:
    """exp(loss), infinite instead of overflowing."""
    return math.exp(loss) if loss < 700 else math.inf
