"""The Train tab: the form, Preview / Start / Stop, and the live dashboard of the run being watched."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from mlm_core.config import TrainConfig, default_learning_rate
from mlm_core.service import history, launch, playground
from mlm_core.service.hosting import settings
from mlm_core.service.launch import STARTER, describe_device
from mlm_core.service.shown import hide_paths
from mlm_core.service.workspace import CANCELLED, QUEUED, RUNNING, STOPPED, RunDir, RunIdentity, Workspace

from . import board, figures, lent_gpu
from .access import Access
from .form import HUB, build_data_fields, build_settings_fields, command_line, config_from, source_changed
from .quick_run import GuideEstimate
from .text import markdown_escaped, plain, refusal

POLL_S = 1.0
IDLE_POLL_S = 5.0  # how often a page polls while the run it shows neither waits nor trains
BOARDS_KEPT = 8  # runs whose dashboard is kept built for every visitor watching them
LOOKED_BACK = 200  # a page with no run chosen shows its visitor's last run among the newest this many
EVENTS_PER_CALL = 500  # events one status call returns at most (the cursor pages through the rest)
FOLLOW_S = 2.0  # on ZeroGPU, how often an open page asks whether its run's next GPU call is due
NOTE_POLL_S = 5.0
# What Quick run sets: the data and every setting the number of steps depends on, as the guides' run was measured.
QUICK_FIELDS = (
    "model",
    "dataset",
    "hub_dataset",
    "slice",
    "text_column",
    "block_size",
    "epochs",
    "batch_size",
    "gradient_accumulation",
    "max_steps",
)
MAX_SESSIONS = 1000  # browser sessions whose last chosen run is remembered (the oldest are forgotten)
CHOSEN_FOR_S = 30.0  # how long a late tick is watched for (the Runs tab's Resume may choose another run meanwhile)
# Brings an answer into view when it is not (on a phone the page is one long column): scrolls as little as needed.
SCROLL_TO = "() => document.getElementById('{}').scrollIntoView({{block: 'nearest'}})"
SEEN_BY_ALL = (
    "Every visitor sees the runs listed: an uploaded file's name (in the run's name and label) and the probe "
    "sentences with their guesses."
)
STARTING = "🚀 Starting: loading the model and the data…"
ZERO_GPU_ESTIMATE = (
    "ℹ️ On this Space the run itself trains on a GPU lent by ZeroGPU, in calls charged to your daily quota, while "
    "this page is open: much faster than this estimate, measured on the CPU."
)


@dataclass
class Board:
    """The dashboard of one run; `run_name` (hidden) says which run it shows."""

    run_name: gr.Textbox
    status: gr.HTML
    progress: gr.HTML
    loss_plot: gr.Plot
    ppl_plot: gr.Plot
    accuracy_plot: gr.Plot
    probe_table: gr.Dataframe
    outcome: gr.HTML
    owner: gr.HTML
    stop_btn: gr.Button
    ticks: gr.Timer
    seen: gr.State

    def outputs(self) -> list:
        """The components a board refresh updates, in the order `TrainTab.board` returns them."""
        return [
            self.run_name,
            self.status,
            self.progress,
            self.loss_plot,
            self.ppl_plot,
            self.accuracy_plot,
            self.probe_table,
            self.outcome,
            self.owner,
            self.stop_btn,
            self.ticks,
            self.seen,
        ]


class TrainTab:
    """Lays out the Train tab and answers its events."""

    def __init__(
        self,
        studio: Workspace,
        access: Access,
        visitor: gr.BrowserState,
        models: list[str],
        first: dict[str, str],
        guide: GuideEstimate | None = None,
    ):
        """`first`: the form's first values (`first_values`); `guide`: online, the guides' run measured here."""
        self.studio, self.access, self.visitor_state, self.guide = studio, access, visitor, guide
        # Per browser session, the run its last Start or Stop chose and when, until a tick shows the page has taken
        # it: a tick sent before (for the run shown then) must not paint that run's status over the chosen one.
        self._chosen: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._chosen_lock = threading.Lock()  # Start, Stop and ticks run in Gradio's worker threads
        self._boards: OrderedDict[tuple, tuple] = OrderedDict()  # `_drawn`, by run, events and status
        self._boards_lock = threading.Lock()
        self._summaries: tuple[tuple, dict] = ((), {})  # the last `_summary` made, by run and events
        with gr.Row():
            with gr.Column(scale=2):
                self.form = build_data_fields(models, first)
                if access.public:  # what a visitor's run shows every other visitor, said where it is chosen
                    self.form["dataset_file"].label += f". {SEEN_BY_ALL}"
                with gr.Row(visible=guide is not None):
                    self.fit_note = gr.Markdown(elem_id="fit-note")
                    self.quick_btn = gr.Button("Quick run for this device", scale=0, elem_id="quick-run")
                with gr.Row():
                    self.preview_btn = gr.Button("Preview data and estimate", elem_id="preview-button")
                    self.start_btn = gr.Button("Start", variant="primary", elem_id="start-button")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-button")
                # What the buttons answer, right under them (at 390 px the plots are far below).
                owner, status = gr.HTML(elem_id="run-owner"), gr.HTML(elem_id="run-status")
                progress, outcome = gr.HTML(elem_id="run-progress"), gr.HTML(elem_id="run-outcome")
                self.preview_md = gr.Markdown(elem_id="preview")
                self.example = gr.HighlightedText(
                    label="One training block: the highlighted words are hidden for the model to guess",
                    color_map={"hidden": "#f59e0b"},
                    combine_adjacent=False,
                    show_legend=False,
                    elem_id="example-block",
                    visible=False,
                )
                with gr.Accordion("Command line", open=False):
                    self.command = gr.Code(
                        language="shell",
                        interactive=False,
                        elem_id="train-command",
                        lines=2,
                        label="The same run on your machine (pip install -r requirements.txt)",
                    )
                self.form.update(build_settings_fields(first, access.trackers()))
                self.probes = gr.Textbox(
                    "",
                    label="Probe sentences (one per line, each with <mask>; add => word to give the right answer)",
                    lines=3,
                    elem_id="probes",
                    placeholder="empty: held-out sentences of your data are picked for you",
                    info="Re-scored at every evaluation so you can watch the guesses change."
                    + (f" {SEEN_BY_ALL}" if access.public else ""),
                )
            with gr.Column(scale=3):
                self.board_view = Board(
                    run_name=gr.Textbox(visible="hidden", elem_id="watched-run"),
                    status=status,
                    progress=progress,
                    loss_plot=gr.Plot(label="Loss", elem_id="loss-plot"),
                    ppl_plot=gr.Plot(label="Perplexity", elem_id="ppl-plot"),
                    accuracy_plot=gr.Plot(label="Guessed right", elem_id="accuracy-plot"),
                    probe_table=gr.Dataframe(
                        headers=figures.PROBE_HEADERS,
                        label="Watch it learn: held-out sentences with a word hidden",
                        interactive=False,
                        wrap=True,
                        datatype="str",
                        column_widths=["42%", "12%", "20%", "26%"],
                        elem_id="probe-table",
                    ),
                    outcome=outcome,
                    owner=owner,
                    stop_btn=stop_btn,
                    ticks=gr.Timer(POLL_S),
                    seen=gr.State(""),
                )

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the tab's events (API names are the public endpoints)."""
        form, view, visitor = self.form, self.board_view, self.visitor_state
        form["dataset"].change(
            source_changed,
            form["dataset"],
            [form["hub_dataset"], form["dataset_file"], form["slice"], form["text_column"]],
            api_name=False,
        )
        form["dataset_file"].change(lambda: "", None, form["text_column"], api_name=False)  # columns follow the file
        form["model"].change(
            self.model_changed, form["model"], [form["mlm_probability"], form["learning_rate"]], api_name=False
        )
        gr.on(
            [field.change for field in form.values()],
            self.command_line,
            inputs_kwargs=form,
            outputs=self.command,
            api_name=False,
            show_progress="hidden",
        )
        demo.load(self.command_line, inputs_kwargs=form, outputs=self.command, api_name=False)
        if self.guide is not None:
            demo.load(self.guide.note, None, self.fit_note, api_name=False)
            ticks = gr.Timer(NOTE_POLL_S)  # until the guides' run is measured
            ticks.tick(
                self.guide.note_until_measured, None, [self.fit_note, ticks], api_name=False, show_progress="hidden"
            )
            quick = [form[name] for name in QUICK_FIELDS]
            self.quick_btn.click(self.quick_run, None, [*quick, self.fit_note], api_name="quick_run")
        self.preview_btn.click(
            self.preview,
            inputs_kwargs=form,
            outputs=[self.preview_md, self.example, self.probes],
            api_name="preview",
            concurrency_limit=1,
        ).success(  # it trains a few real steps
            None, js=SCROLL_TO.format("preview")
        )
        self.start_btn.click(
            self.start, [visitor, self.probes], view.outputs(), inputs_kwargs=form, api_name="start"
        ).success(None, js=SCROLL_TO.format("run-status"))
        view.stop_btn.click(self.stop, [visitor, view.run_name], view.outputs(), api_name="stop")
        view.ticks.tick(
            self.refresh, [visitor, view.run_name, view.seen], view.outputs(), api_name=False, show_progress="hidden"
        )
        demo.load(self.refresh, [visitor, view.run_name, view.seen], view.outputs(), api_name=False)
        if self.studio.queue.lent:  # each slice of a run is a GPU call its visitor's page makes
            gr.Timer(FOLLOW_S).tick(
                self.follow,
                [visitor, view.run_name],
                gr.Textbox(visible=False),
                api_name="follow",
                show_progress="hidden",
                concurrency_limit=None,  # a page whose run does not train answers at once
            )
        gr.Button(visible=False).click(
            self.status_json,
            [gr.Textbox(visible=False), gr.Textbox("0", visible=False)],
            gr.Textbox(visible=False),
            api_name="status",
        )

    def command_line(self, **form) -> str:
        """The CLI line for the form as it stands, or what to fix first (as a shell comment)."""
        try:
            return command_line(self._config(form, "my-run"))
        except ValueError as error:
            return f"# {plain(str(error))}"

    def _config(self, form: dict, name: str) -> TrainConfig:
        """The form's run config, its folder `name` in the runs folder; ValueError in plain words as `config_from`,
        and for a file of the runs folder (Gradio hands runs' zips out from there as they are, so such a path passes
        its upload check): the form reads only uploads."""
        config = config_from(form, output_dir=str(self.studio.root / name))
        if config.dataset_file and Path(config.dataset_file).resolve().is_relative_to(self.studio.root.resolve()):
            raise ValueError("dataset_file: upload it with the form; this server reads no other file")
        return config

    def model_changed(self, model: str):
        """Hide the masking knob for causal models and suggest a learning rate for the model."""
        return gr.update(visible=not playground.generates(model)), gr.update(value=default_learning_rate(model or ""))

    def quick_run(self):
        """The form set to the guides' run cut to a run's budget on this device (the starter model on the same
        rows when even the smallest slice would not fit), and the note saying what it keeps; gr.Error (a
        `refusal`) while the guides' run is still being measured or could not be."""
        try:
            fit = self.guide.quick()
        except ValueError as error:
            raise refusal(error) from None
        config = fit.config if fit.fits else fit.config.replace(model=STARTER)
        values = {
            **{name: getattr(config, name) for name in QUICK_FIELDS if hasattr(config, name)},
            "dataset": HUB,
            "hub_dataset": config.dataset,
            "max_steps": config.max_steps or 0,
        }
        return *(values[name] for name in QUICK_FIELDS), self.guide.note()

    def preview(self, **form):
        """Blocks, an example block with its hidden words, probes, and the time and memory estimate for this device;
        gr.Error (a `refusal`) in plain words when the settings, model or data cannot be used."""
        try:
            result = launch.preview(self._config(form, "preview"))
        except ValueError as error:
            raise refusal(error) from None
        rows = f"{result.records:,} of {result.rows_total:,} rows" if result.rows_total else f"{result.records:,} rows"
        lines = [
            f"**{rows} → {result.tokens:,} tokens → {result.train_blocks:,} training and "
            f"{result.eval_blocks:,} held-out blocks of {result.block_size} tokens**, from the text of "
            f"{_columns(result.text_column)}.",
            f"**Estimate on {result.device or describe_device()}:** {result.total_steps:,} steps at "
            f"{result.seconds_per_step:.2f} s each (measured) → about "
            f"**{board.duration(result.estimated_seconds)}**, using about "
            f"**{result.memory_bytes / 2**30:.1f} GiB** of memory.",
            f"**Your words:** {result.pieces_per_word:.2f} pieces each on average; {result.whole_word_share:.0%} "
            "of them are one piece of this model's vocabulary (the model guesses those in one go).",
            *([f"⚠️ {markdown_escaped(result.fit_advice)}"] if result.fit_advice else []),
            *[f"ℹ️ {markdown_escaped(hide_paths(plain(m)))}" for m in result.messages if "block_size" in m],
            *([f"ℹ️ {markdown_escaped(without_text(result))}"] if result.records > result.documents else []),
            *([ZERO_GPU_ESTIMATE] if self.studio.queue.lent else []),
        ]
        probes = "\n".join(probe.line() for probe in result.probes)
        example = gr.update(value=result.example, visible=True)
        return "\n\n".join(lines), example, probes or gr.skip()

    def start(
        self, visitor=None, probes="", request: gr.Request = None, dataset_file=None, progress=gr.Progress(), **form
    ):
        """Queue a run (it starts at once when the device is free); its dashboard replaces the one shown. gr.Error
        (a `refusal`) in plain words when the visitor may not start one or the settings, model or data cannot be
        used (whatever Preview refuses: nothing is queued then; the data is read first, with a progress bar, and the
        run reuses it). The defaults make `visitor` (a new one), `probes` and `dataset_file` optional for API
        clients."""
        visitor = self.access.visitor(visitor, request)
        form["dataset_file"] = dataset_file
        try:
            lines = probes.splitlines() if isinstance(probes, str) else []
            probes = tuple(line.strip() for line in lines if line.strip())
            config = launch.new_run(self._config(form, "new-run"), self.studio.root)
            self.access.check_report_to(config.report_to)
            launch.check_inputs(
                config, lambda done, total: progress((done, total), desc="Reading your data", unit="documents")
            )
            with self.access.admitting():
                budget = self.access.check_start(visitor, self.studio.active_runs(), self.studio.root, probes)
                identity = RunIdentity(
                    label=launch.label_of(config),
                    owner=visitor.key,
                    user=visitor.user,
                    address=visitor.address,
                    source="app",
                    kept=visitor.admin,  # the owner's run: retention keeps it
                    probes=probes,
                    budget=budget,
                )
                run = self.studio.queue.submit(config, identity)
        except ValueError as error:
            raise refusal(error) from None
        return self._choose(request, run, visitor)

    def stop(self, visitor, run_name, request: gr.Request):
        """Stop the watched run after its current step (it keeps its checkpoint), or take it out of the queue.
        gr.Error (a `refusal`) made from the ValueError that refused it: nothing to stop, or not the visitor's."""
        visitor = self.access.visitor(visitor, request)
        try:
            run = self.studio.run(run_name) if run_name else self.studio.running()
            if run is None:
                raise ValueError("run: nothing is running, so there is nothing to stop")
            self.access.check_control(visitor, run, "stop")
            if self.studio.stop(run) == CANCELLED:
                gr.Info("The run was waiting in the queue; it is cancelled.")
                return self._choose(request, None, visitor)
        except ValueError as error:
            raise refusal(error) from None
        return self._choose(request, run, visitor)

    def follow(self, visitor, run_name, request: gr.Request):
        """On ZeroGPU: when the watched run is the visitor's and its turn has come, train its next slice in a GPU
        call charged to them, then queue it again while steps are left; a refused or failed call pauses it, in words
        (a warning, and its status). JSON of what happened (`run`, `status`, `step`, `message`), "" when nothing was
        due."""
        visitor, queue = self.access.visitor(visitor, request), self.studio.queue
        run = self._watched(run_name) or self._default_run(visitor)
        if run is None or not self.access.may_control(visitor, run):
            return ""
        if run.status() == QUEUED:
            queue.followed(run)  # its page is open, also while runs before it train
        if not queue.begin_slice(run):
            return ""
        place, message = run.identity().queued_at, None
        try:
            done = lent_gpu.train_slice(str(run.path), settings.current().gpu_slice_s)
        except Exception as error:  # noqa: BLE001 - a refused quota, a call past its time: the run waits, resumable
            queue.end_slice(run, None, steps_left=False)
            said = getattr(error, "message", None) or str(error)  # gr.Error's own words, ZeroGPU's
            message = f"the GPU call was refused or cut short: {plain(said).rstrip('.')}"
            if queue.pause(run, message):  # a run that failed inside the call says why itself
                gr.Warning(f"The run is paused: {message}. Resume it from Runs.")
        else:
            queue.end_slice(run, place, steps_left=done.status == STOPPED and not done.stop_asked)
        results = run.results() if run.is_run() else None
        return json.dumps(
            {"run": run.name, "status": run.status(), "step": results and results.steps, "message": message}
        )

    def _choose(self, request: gr.Request | None, run: RunDir | None, visitor) -> list:
        """The dashboard of the run a button chose, remembered for the session until its page shows it."""
        session = getattr(request, "session_hash", None)
        if session:
            with self._chosen_lock:
                self._chosen[session] = (run.name if run else "", time.monotonic())
                self._chosen.move_to_end(session)
                while len(self._chosen) > MAX_SESSIONS:
                    self._chosen.popitem(last=False)
        return self.board(run, visitor, seen="")

    def refresh(self, visitor, run_name, seen, request: gr.Request):
        """The watched run's dashboard; untouched components when nothing changed since the last refresh."""
        visitor = self.access.visitor(visitor, request)
        session = getattr(request, "session_hash", None)
        with self._chosen_lock:
            chosen, at = self._chosen.get(session, (None, 0.0)) if session else (None, 0.0)
            if chosen is not None:
                if (run_name or "") != chosen and time.monotonic() - at < CHOSEN_FOR_S:  # sent before the page had it
                    return [gr.skip()] * len(self.board_view.outputs())
                self._chosen.pop(session, None)
        watched = self._watched(run_name)
        values = self.board(watched or self._default_run(visitor), visitor, seen)
        if watched is not None:  # only Start, Stop and a first look choose the run: a late tick must not undo them
            values[0] = gr.skip()
        return values

    def _watched(self, name) -> RunDir | None:
        """The run the page shows, if it still exists."""
        try:
            return self.studio.run(name) if name else None
        except ValueError:
            return None

    def _default_run(self, visitor) -> RunDir | None:
        """What a page shows first: the visitor's waiting or training run, else the one training, else their last."""

        def mine(run: RunDir) -> bool:
            return visitor.owns(run) or not self.access.public

        active = next((run for run in self.studio.active_runs() if mine(run)), None)
        recent = self.studio.runs(LOOKED_BACK)
        return active or self.studio.running() or next((run for run in recent if mine(run)), None)

    def board(self, run: RunDir | None, visitor, seen: str) -> list:
        """The dashboard's component values for a run (None: no run yet)."""
        if run is None:
            if seen == "none":  # unchanged; and a tick answered late must not blank a run Start chose meanwhile
                return [gr.skip()] * 11 + [seen]
            return [
                "",
                board.status_line([], "none"),
                board.progress_html([], "none"),
                None,
                None,
                None,
                [],
                "",
                "",
                gr.update(interactive=False),
                gr.Timer(IDLE_POLL_S),
                "none",
            ]
        events, status = self.studio.events(run), run.status()
        stopping = self.studio.queue.stopping(run)
        yours = self.access.may_control(visitor, run)
        line = self._status_line(run, events, status, stopping)
        key = f"{run.name}:{len(events)}:{status}:{stopping}:{yours}:{line}"
        if key == seen:
            return [gr.skip()] * 11 + [seen]
        active = status in {RUNNING, QUEUED}
        return [
            run.name,
            line,
            *self._drawn(run, events, status),
            board.owner_note(yours, self.access.public),
            gr.update(interactive=yours and active),
            gr.Timer(POLL_S if active else IDLE_POLL_S),
            key,
        ]

    def _drawn(self, run: RunDir, events: list, status: str) -> tuple:
        """The progress bar, plots, probe table and outcome of a run as it stands, drawn once for every visitor
        watching it (from `shown_events`: their cost does not grow with the run)."""
        key = (run.name, len(events), status)
        with self._boards_lock:
            if key in self._boards:
                return self._boards[key]
        shown = self.studio.shown_events(run)
        results = board.results_from(events) if status not in {RUNNING, QUEUED} else None
        drawn = (
            board.progress_html(shown, status),
            figures.loss_figure(shown),
            figures.perplexity_figure(shown),
            figures.accuracy_figure(shown, board.guessed_words(shown)),
            figures.probe_table(shown),
            board.outcome_text(results),
        )
        with self._boards_lock:
            self._boards[key] = drawn
            while len(self._boards) > BOARDS_KEPT:
                self._boards.popitem(last=False)
        return drawn

    def _status_line(self, run: RunDir, events: list, status: str, stopping: bool) -> str:
        """The run's status line. A queued run that is next while no other run trains or starts is starting (its
        process loads, until its first event); one that waits behind a run with an ETA says in how long it starts,
        counting down."""
        if status == RUNNING and not events:
            return STARTING
        if status == STOPPED:
            results = run.results()
            return board.status_line(events, status, why=results and results.message)
        if status != QUEUED:
            return board.status_line(events, status, stopping)
        position, running = self.studio.queue.position(run), self.studio.running()
        if self.studio.queue.lent and position == 1 and running is None and run.identity().resume:
            return board.between_calls(events)
        ahead = running is not None and running != run and running.status() in {RUNNING, QUEUED}  # not just ended
        if running == run or (position == 1 and not ahead):
            return STARTING
        wait_s = self.studio.eta_s(running) if position == 1 and ahead else None
        return board.status_line(events, status, stopping, position, wait_s)

    def status_json(self, run_name, after="0") -> str:
        """A run's status and its events from the cursor `after` (how many the client holds) on, at most
        EVENTS_PER_CALL of them, as a JSON string (so that clients do not take paths for files): `cursor` is the
        `after` of the next call, `more` whether events are left beyond it. A client that holds none (`after` 0) also
        gets `summary`, the run's whole history in a size that does not grow with it (`history.summary`)."""
        try:
            run = self.studio.run(run_name) if run_name else self.studio.running() or next(iter(self.studio.runs(1)))
        except (ValueError, StopIteration):
            return json.dumps({"name": None, "status": "none", "events": [], "cursor": 0, "more": False})
        try:
            start = max(0, int(after))
        except (TypeError, ValueError):
            start = 0
        status, events = run.status(), self.studio.events(run)
        page = events[start : start + EVENTS_PER_CALL]
        return json.dumps(
            {
                "name": run.name,
                "label": run.identity().label,
                "status": status,
                "position": self.studio.queue.position(run) if status == QUEUED else None,
                **({"summary": self._summary(run, events)} if start == 0 else {}),
                "events": [public_event(e) for e in page],
                "cursor": start + len(page),
                "more": start + len(page) < len(events),
            }
        )

    def _summary(self, run: RunDir, events: list) -> dict:
        """`history.summary` of the run's events, made once per new event whoever asks."""
        key = (run.name, len(events))
        with self._boards_lock:
            if self._summaries[0] != key:
                self._summaries = (key, history.summary(events))
            return self._summaries[1]


def public_event(event) -> dict:
    """An event as JSON for anyone to read: no path of this machine in its words."""
    return {key: hide_paths(value) if isinstance(value, str) else value for key, value in event.to_dict().items()}


def without_text(result) -> str:
    """The sentence for rows left out because their column held no text."""
    left = result.records - result.documents
    return (
        f"{left:,} of the {result.records:,} rows hold no text in {result.text_column} (empty, or a number, "
        "a list or another value that is not text) and are left out."
    )


def _columns(text_column: str) -> str:
    """The text columns a preview read, in words, with how to choose others (the names are the data's: escaped)."""
    names = [markdown_escaped(name.strip()) for name in text_column.split(",")]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    joined = ", joined per row" if len(names) > 1 else ""
    return f"column{'s' * (len(names) > 1)} {listed}{joined} (to choose others, name them in Text column)"
