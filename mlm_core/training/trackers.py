"""Experiment trackers through Accelerate: a run's Step and Eval events as metrics for trackio, TensorBoard, W&B, ..."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, TrackioTracker

from mlm_core.config import NO_TRACKER, TrainConfig
from mlm_core.events import Done, Eval, Event, Started, Status, Step

PROJECT = "mlm-studio"  # every run is a run of this project, named after its folder
RUN_NAME_OPTION = {"wandb": "name", "mlflow": "run_name"}  # the trackers' own word for a run's name
# What would send trackio's data away from this machine (a Space, a server, a bucket, a dataset, a webhook).
TRACKIO_REMOTE_VARIABLES = (
    "TRACKIO_SPACE_ID",
    "TRACKIO_SERVER_URL",
    "TRACKIO_WRITE_TOKEN",
    "TRACKIO_BUCKET_ID",
    "TRACKIO_DATASET_ID",
    "TRACKIO_WEBHOOK_URL",
)


def tracker_folder(config: TrainConfig, name: str) -> Path:
    """Where a tracker that writes files keeps them: `<runs folder>/.<tracker>`, hidden as the data cache is, and
    shared by the folder's runs so that the tracker's dashboard compares them."""
    return Path(config.output_dir).resolve().parent / f".{name}"


def metrics(event: Step | Eval) -> dict[str, float]:
    """A step's or an evaluation's figures as a tracker's values; what was not measured is left out."""
    if isinstance(event, Step):
        values = {
            "train/loss": event.loss,
            "train/learning_rate": event.learning_rate,
            "train/tokens_per_s": event.tokens_per_s,
            "train/epoch": event.epoch,
        }
    else:
        values = {
            "eval/loss": event.eval_loss,
            "eval/perplexity": event.perplexity,
            "eval/top1": event.top1,
            "eval/top5": event.top5,
        }
    return {key: value for key, value in values.items() if value is not None and math.isfinite(value)}


def settings(config: TrainConfig) -> dict:
    """The run's settings as a tracker's configuration (trackers take no None: an unset setting is left out)."""
    return {key: value for key, value in config.to_dict().items() if value is not None}


class RunTrackers:
    """The experiment tracker a run reports to (`config.report_to`), on the main process only: started when the run
    starts, given each Step and Eval at its step, finished when the run ends. A tracker that fails is dropped with a
    Status line saying why; the run goes on."""

    def __init__(self, config: TrainConfig, emit: Callable[[Event], None], main: bool = True):
        self.config, self.emit = config, emit
        self.name = config.report_to if main else NO_TRACKER
        self.tracker: GeneralTracker | None = None

    def __enter__(self) -> RunTrackers:
        return self

    def __exit__(self, *failure) -> None:
        self.close()

    def following(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """`emit`, then the event to the tracker (just `emit` when the run reports to none)."""
        if self.name == NO_TRACKER:
            return emit

        def emit_and_track(event: Event) -> None:
            """Emit the event, then track it."""
            emit(event)
            self.track(event)

        return emit_and_track

    def track(self, event: Event) -> None:
        """Start the tracker when the run starts, log steps and evaluations, finish when the run is done."""
        if isinstance(event, Started):
            self._start()
        elif isinstance(event, (Step, Eval)) and self.tracker is not None:
            self._call(self.tracker.log, metrics(event), step=event.step)
        elif isinstance(event, Done):
            self.close()

    def close(self) -> None:
        """Finish the tracker's run (once)."""
        if self.tracker is not None:
            self._call(self.tracker.finish)
            self.tracker = None

    def _start(self) -> None:
        """Make and start the tracker, with the run's settings as its configuration."""
        try:
            with _quiet():
                tracker = make_tracker(self.config)
                tracker.start()
                tracker.store_init_configuration(settings(self.config))
        except Exception as error:
            self._failed(error)
            return
        self.tracker = tracker
        where = getattr(tracker, "where", "")
        self.emit(Status(f"Metrics also go to {self.name}{where}."))

    def _call(self, method: Callable, *args, **kwargs) -> None:
        """Call a tracker's method; a failure drops the tracker."""
        try:
            with _quiet():
                method(*args, **kwargs)
        except Exception as error:
            self.tracker = None
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        """Say in the run's events that the tracker failed and the run goes on without it."""
        cause = (str(error).strip().splitlines() or [""])[0]
        self.emit(
            Status(
                f"The experiment tracker {self.name} failed ({type(error).__name__}: {cause}); the run goes "
                "on without it."
            )
        )


def make_tracker(config: TrainConfig) -> GeneralTracker:
    """Accelerate's tracker for `config.report_to`, for the run named after its folder; trackio kept on this machine,
    a tracker that writes files given `<runs folder>/.<tracker>/<run>`."""
    name, run = config.report_to, Path(config.output_dir).name
    if name == "trackio":
        return LocalTrackio(run, tracker_folder(config, name))
    kind = LOGGER_TYPE_TO_CLASS[name]
    folder = (str(tracker_folder(config, name) / run),) if kind.requires_logging_directory else ()
    return kind(PROJECT, *folder, **({RUN_NAME_OPTION[name]: run} if name in RUN_NAME_OPTION else {}))


class LocalTrackio(TrackioTracker):
    """Accelerate's trackio tracker, offline: its database in `folder`, nothing sent to a Space, server, bucket or the
    hub, no system metrics; one run per run folder, continued when the run resumes."""

    def __init__(self, run: str, folder: Path):
        super().__init__(PROJECT, name=run, resume="allow", embed=False, auto_log_cpu=False, auto_log_gpu=False)
        self.folder = folder
        self.where = f" (offline, in {folder}: TRACKIO_DIR={folder} trackio show --project {PROJECT})"

    def start(self) -> None:
        """Start trackio's run, offline."""
        with _offline_trackio(self.folder):
            super().start()

    def store_init_configuration(self, values: dict) -> None:
        """The run's settings (Accelerate's own version also stores its `allow_val_change` flag as a setting)."""
        import trackio

        trackio.config.update(values)

    def finish(self) -> None:
        """Write what is left and close the run; trackio forgets it (else it finishes it again as the process ends)."""
        import trackio

        trackio.finish()


@contextlib.contextmanager
def _offline_trackio(folder: Path) -> Iterator[None]:
    """While trackio starts: TRACKIO_DIR is `folder` (trackio reads it once, on import), none of the variables that
    send its data elsewhere is set, and the hub is offline (trackio asks it who the user is, with their token)."""
    import huggingface_hub.constants as hub

    saved = {name: os.environ.pop(name) for name in (*TRACKIO_REMOTE_VARIABLES, "TRACKIO_DIR") if name in os.environ}
    os.environ["TRACKIO_DIR"] = str(folder)
    offline, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        import trackio.utils

        if Path(trackio.utils.TRACKIO_DIR) != folder:
            raise RuntimeError(
                f"this process keeps trackio's data in {trackio.utils.TRACKIO_DIR} already; train the "
                "run in a process of its own"
            )
        yield
    finally:
        hub.HF_HUB_OFFLINE = offline
        del os.environ["TRACKIO_DIR"]
        os.environ.update(saved)


def _quiet() -> contextlib.AbstractContextManager:
    """Trackers print to stdout, which is the CLI's summary: their lines go to stderr."""
    return contextlib.redirect_stdout(sys.stderr)
