"""The playground's work as ZeroGPU runs it: module-level functions of plain data, decorated once with `spaces.GPU`.

On a ZeroGPU Space the `spaces` package pickles a call's arguments to a worker process forked from the app, lends
that process a GPU for the call's duration (charged to the visitor whose request made the call), and pickles the
result back; an exception other than `gr.Error` reaches the visitor as a bare "ZeroGPU worker error", so refusals
are raised as `gr.Error` inside the call. Elsewhere `spaces.GPU` returns the function itself. The caller checks the
requests and loads the models in the app's process first (on the CPU), and makes figures and tables after.

Durations are upper bounds in seconds, from the arguments: ZeroGPU schedules shorter calls first and refuses a
call longer than the visitor's quota left.
"""

from __future__ import annotations

from mlm_core.service import launch, playground

from .text import refusal

try:
    import spaces

    GPU = spaces.GPU
except ImportError:  # on every Space; a local install may lack it

    def GPU(task=None, **_options):
        """No ZeroGPU here: the function as it is."""
        return task if task is not None else (lambda function: function)


CALL_S = 10  # a call's fixed part: the worker's start, the model's move to the GPU
SURPRISE_CHARACTERS_PER_S = 500  # pseudo-log-likelihood: one forward per word, batched
LONGEST_TEXT = 5_000  # characters: a longer text is refused inside the call for its length, not for the quota
GENERATED_TOKENS_PER_S = 20
# A slice takes steps for this share of the seconds it asks; the rest is for loading, the held-out set's measure at
# a run's end, the checkpoint, and a step slower than the others.
SLICE_STEPS_SHARE = 0.5


def fill_seconds(requests: tuple[playground.FillRequest, ...]) -> int:
    """The duration asked for `fill`: a few seconds a model."""
    return CALL_S + 5 * len(requests)


def surprise_seconds(requests: tuple[tuple[str, str], ...]) -> int:
    """The duration asked for `surprise`: longer for longer texts."""
    # Runs before the call, on what a visitor sent: a text that is none asks the least (it is refused inside).
    lengths = [min(len(text), LONGEST_TEXT) if isinstance(text, str) else 0 for _, text in requests]
    return CALL_S + sum(5 + length // SURPRISE_CHARACTERS_PER_S for length in lengths)


def generate_seconds(request: playground.GenerateRequest) -> int:
    """The duration asked for `generate`: longer for more tokens."""
    return CALL_S + request.max_new_tokens // GENERATED_TOKENS_PER_S


def slice_seconds(folder: str, seconds: float, steps: int | None = None) -> float:
    """The duration asked for `train_slice`: the slice's own."""
    return seconds


@GPU(duration=fill_seconds)
def fill(requests: tuple[playground.FillRequest, ...]) -> tuple[playground.Filled, ...]:
    """`playground.fill` for each request (the models side by side), on the lent GPU; gr.Error in plain words."""
    playground.use_lent_gpu()
    try:
        return tuple(playground.fill(request) for request in requests)
    except ValueError as error:
        raise refusal(error) from None


@GPU(duration=surprise_seconds)
def surprise(requests: tuple[tuple[str, str], ...]) -> tuple[list[tuple[str, float | None]], ...]:
    """`playground.surprise` for each (model, text), on the lent GPU; gr.Error in plain words."""
    playground.use_lent_gpu()
    try:
        return tuple(playground.surprise(model, text) for model, text in requests)
    except ValueError as error:
        raise refusal(error) from None


@GPU(duration=generate_seconds)
def generate(request: playground.GenerateRequest) -> str:
    """`playground.generate`, on the lent GPU; gr.Error in plain words."""
    playground.use_lent_gpu()
    try:
        return playground.generate(request)
    except ValueError as error:
        raise refusal(error) from None


@GPU(duration=slice_seconds)
def train_slice(folder: str, seconds: float, steps: int | None = None) -> launch.Slice:
    """`launch.train_slice` on the lent GPU for a call of `seconds`: the run in `folder` (a path of this server,
    never a visitor's) trains for part of them (`SLICE_STEPS_SHARE`; at most `steps` steps), ending with a
    checkpoint. gr.Error in plain words."""
    playground.use_lent_gpu()
    try:
        return launch.train_slice(folder, steps, seconds * SLICE_STEPS_SHARE)
    except ValueError as error:
        raise refusal(error) from None
