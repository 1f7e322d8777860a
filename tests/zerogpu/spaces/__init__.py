"""A stand-in for the `spaces` package as it runs on a ZeroGPU Space, for machines without one (its real mode needs
a CUDA build of torch and the Space's device service). Put this folder first on PYTHONPATH.

`GPU` is called as the real one is (`@GPU`, `@GPU(duration=...)` with seconds or a callable of the task's
arguments, `size=`) and, as the real one, returns the task itself unless SPACES_ZERO_GPU is set. With it set, as
`spaces.zero` does (its wrappers.py, version 0.51):
- outside GPU calls `torch.cuda.is_available()` says True, while no CUDA work can run (the device is a fake);
- each call is charged to its visitor (the X-IP-Token header the Space's proxy adds, else the client's address,
  read from the Gradio request that makes the call) and refused in ZeroGPU's words when the duration it asks for
  is more than the visitor's quota left (STANDIN_ZEROGPU_QUOTA_S seconds, default 300; STANDIN_ZEROGPU_QUOTAS, a JSON
  object, gives some visitors their own, as free and PRO accounts have);
- its arguments are pickled to a worker process forked from the app (kept for the next call while it lives), where
  `torch.cuda` is itself again, and its result is pickled back; a result or argument that does not pickle fails
  the call;
- a call past its duration is killed ("GPU task aborted");
- the worker computes on the CPU with one thread (see `_serve`); an exception other than gr.Error reaches the caller as
  "ZeroGPU worker error" naming its class, a gr.Error as it was raised.
Each call adds one JSON line to STANDIN_ZEROGPU_JOURNAL when set: the task, the worker's process id, the bytes
pickled each way, the seconds asked for and taken, the visitor, and the outcome.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import pickle
import threading
import time

import gradio as gr

ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in {"1", "t", "true"}
QUOTA_S = float(os.environ.get("STANDIN_ZEROGPU_QUOTA_S", "300"))
QUOTAS = json.loads(os.environ.get("STANDIN_ZEROGPU_QUOTAS", "{}"))
JOURNAL = os.environ.get("STANDIN_ZEROGPU_JOURNAL")
DEFAULT_DURATION_S = 60

_used: dict[str, float] = {}
_used_lock = threading.Lock()
_in_worker = False

if ZERO_GPU:
    import torch

    _real_is_available = torch.cuda.is_available
    torch.cuda.is_available = lambda: True  # as `spaces` patches it in the app's process


def GPU(task=None, *, duration=None, size=None, **_ignored):
    """The ZeroGPU decorator (see the module's docstring)."""
    if task is None:
        return functools.partial(GPU, duration=duration, size=size)
    if not ZERO_GPU:
        return task
    return _LentGPU(task, duration)


class _LentGPU:
    """A task run in a forked worker process, one call at a time, as ZeroGPU runs it."""

    def __init__(self, task, duration):
        self.task, self.duration = task, duration
        self.worker, self.connection = None, None
        self.lock = threading.Lock()
        functools.update_wrapper(self, task)

    def __call__(self, *args, **kwargs):
        if _in_worker:  # a GPU call made inside another runs there, as `spaces` does
            return self.task(*args, **kwargs)
        seconds = self.duration(*args, **kwargs) if callable(self.duration) else self.duration
        seconds = float(seconds or DEFAULT_DURATION_S)
        visitor = _visitor()
        with _used_lock:
            left = QUOTAS.get(visitor, QUOTA_S) - _used.get(visitor, 0.0)
            if seconds > left:
                self._journal(visitor, seconds, 0.0, None, 0, 0, "quota")
                raise gr.Error(
                    f"You have exceeded your ZeroGPU quota ({seconds:.0f}s requested vs. {max(left, 0):.0f}s left). "
                    "Try again later.",
                    title="ZeroGPU quota exceeded",
                )
        sent = pickle.dumps((args, kwargs))  # a PicklingError here, as in `spaces`
        with self.lock:
            started = time.monotonic()
            connection = self._worker()
            connection.send_bytes(sent)
            if not connection.poll(seconds):
                self.worker.kill()
                self.worker.join()
                self.worker = None
                outcome, received = "aborted", b""
            else:
                received = connection.recv_bytes()
                outcome = "done"
            taken = time.monotonic() - started
            pid = self.worker.pid if self.worker else None
        with _used_lock:
            _used[visitor] = _used.get(visitor, 0.0) + taken
        if outcome == "aborted":
            self._journal(visitor, seconds, taken, pid, len(sent), 0, outcome)
            raise gr.Error("GPU task aborted", title="ZeroGPU worker error")
        kind, value = pickle.loads(received)
        self._journal(visitor, seconds, taken, pid, len(sent), len(received), kind)
        if kind == "ok":
            return value
        if isinstance(value, gr.Error):
            raise value
        raise gr.Error(value, title="ZeroGPU worker error")

    def _worker(self):
        """The connection to a live worker process, forked now if there is none."""
        if self.worker is None or not self.worker.is_alive():
            parent, child = multiprocessing.Pipe()
            self.worker = multiprocessing.get_context("fork").Process(target=self._serve, args=(child,), daemon=True)
            self.worker.start()
            child.close()
            self.connection = parent
        return self.connection

    def _serve(self, connection) -> None:
        """The worker's loop: unpickle a call, run it, pickle its outcome back."""
        global _in_worker
        _in_worker = True
        threading.Thread(target=_end_with, args=(os.getppid(),), daemon=True).start()
        if ZERO_GPU:
            torch.cuda.is_available = _real_is_available  # a lent GPU is a real one
        import torch as cpu_torch

        # Here the CPU does a GPU's work, on one thread: OpenMP's thread pool does not survive a fork (a parent that
        # ran a parallel region deadlocks the child's first one), and a real worker computes on its GPU.
        cpu_torch.set_num_threads(1)
        while True:
            try:
                args, kwargs = pickle.loads(connection.recv_bytes())
            except EOFError:
                return
            try:
                outcome = ("ok", self.task(*args, **kwargs))
            except gr.Error as error:
                outcome = ("error", error)
            except Exception as error:  # noqa: BLE001 - every other exception comes back as its class's name
                outcome = ("error", type(error).__name__)
            try:
                data = pickle.dumps(outcome)
            except Exception as error:  # noqa: BLE001 - a result that does not pickle fails the call
                data = pickle.dumps(("error", type(error).__name__))
            connection.send_bytes(data)

    def _journal(self, visitor, asked, taken, pid, sent, received, outcome) -> None:
        if not JOURNAL:
            return
        line = {
            "task": self.task.__name__,
            "pid": pid,
            "app_pid": os.getpid(),
            "sent_bytes": sent,
            "received_bytes": received,
            "asked_s": asked,
            "taken_s": round(taken, 3),
            "visitor": visitor,
            "outcome": outcome,
        }
        with open(JOURNAL, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")


def _visitor() -> str:
    """Who is charged: the X-IP-Token the Space's proxy adds, else the client's address."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    if request is None:
        return "no request"
    headers = getattr(request, "headers", {}) or {}
    token = headers.get("x-ip-token")
    if token:
        return token
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def _end_with(app: int) -> None:
    """In a worker: exit once the app's process is gone (a test that kills the app left its workers behind, 450 MB
    each). Polled, not prctl's death signal: that fires when the forking thread ends, and Gradio's threads come
    and go."""
    while os.getppid() == app:
        time.sleep(0.5)
    os._exit(0)
