"""A terminal progress bar (stderr) fed by training events."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from mlm_core.events import Eval, Event, Started, Status, Step


class ProgressPrinter:
    """Callable event listener that draws a tqdm bar on stderr and writes status lines above it."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def __enter__(self) -> "ProgressPrinter":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(
                total=event.total_steps,
                initial=event.resumed_from_step,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                desc=event.task.upper(),
            )
        elif isinstance(event, Step) and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.3f}", tok_s=f"{event.tokens_per_s:,.0f}", refresh=False)
        elif isinstance(event, Eval):
            label = "base perplexity" if event.base else f"step {event.step} perplexity"
            self._write(f"{label}: {event.perplexity:.2f} (eval loss {event.eval_loss:.4f})")
        elif isinstance(event, Status):
            self._write(event.message)

    def _write(self, line: str) -> None:
        """A line above the bar (or plain, before the bar exists)."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
