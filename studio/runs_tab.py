"""The Runs tab: every run as a history, curves of up to six runs overlaid, and one run's actions (label, resume,
stop, delete, download, push)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import gradio as gr

from mlm_core.config import TrainConfig
from mlm_core.service.shown import hide_paths
from mlm_core.service.workspace import (
    CANCELLED,
    QUEUED,
    RUNNING,
    RunDir,
    Workspace,
    held_out_difference,
    push_run,
    zip_run,
)

from . import board, figures
from .access import Access
from .form import command_line
from .text import escaped, refusal

MAX_COMPARED = 6
LISTED_RUNS = 100  # rows of the runs table (an older run is still chosen by typing its name)
TABLE_HEADERS = [
    "label",
    "status",
    "base model",
    "data",
    "base perplexity",
    "final perplexity",
    "right in top 5",  # hidden words (next tokens for a causal LM) among the five best guesses, on held-out text
    "steps",
    "duration",
    "date",
    "yours",
    "run",
]
MAX_LABEL_CHARS = 80
PRIVATE_SETTINGS = {"output_dir", "dataset_file"}  # where a run and its upload live on the server


class RunsTab:
    """Lays out the Runs tab and answers its events."""

    def __init__(
        self, studio: Workspace, access: Access, visitor: gr.BrowserState, watched: tuple[gr.Tabs, gr.Textbox]
    ):
        """`watched`: the page's tabs and the Train tab's watched run, which Resume switches to the resumed run."""
        self.studio, self.access, self.visitor_state = studio, access, visitor
        self.tabs, self.watched = watched
        self._served: set[Path] = set()  # export folders Gradio serves as they are (`export_zip`)
        self._listing: tuple[int, list] = (-1, [])  # `_listed`, with the index version it was made at
        self._listing_lock = threading.Lock()
        with gr.Tab("Runs", id="runs") as self.tab:
            self.table = gr.Dataframe(
                headers=TABLE_HEADERS,
                datatype="str",
                label="Every run, newest first",
                interactive=False,
                elem_id="runs-table",
                wrap=True,
            )
            self.refresh_btn = gr.Button("Refresh", size="sm")
            with gr.Accordion("Compare runs", open=True):
                with gr.Row():
                    self.compared = gr.CheckboxGroup(
                        label=f"Runs to overlay (up to {MAX_COMPARED})", elem_id="compare-runs", scale=3
                    )
                    self.x_axis = gr.Radio(list(figures.X_AXES), value="steps", label="x axis", scale=1)
                with gr.Row():
                    self.compare_loss = gr.Plot(label="Train loss", elem_id="compare-loss")
                    self.compare_ppl = gr.Plot(label="Perplexity", elem_id="compare-ppl")
                self.differences = gr.Dataframe(
                    label="Settings that differ", interactive=False, datatype="str", elem_id="compare-settings"
                )
            with gr.Accordion("One run", open=True):
                with gr.Row():
                    self.selected = gr.Dropdown(label="Run", allow_custom_value=True, elem_id="selected-run")
                    self.label = gr.Textbox(label="Label", max_length=MAX_LABEL_CHARS, placeholder="a name you choose")
                    self.label_btn = gr.Button("Save label")
                self.rights = gr.HTML(elem_id="run-rights")
                with gr.Row():
                    self.resume_btn = gr.Button("Resume training")
                    self.stop_btn = gr.Button("Stop (or take out of the queue)")
                    self.delete_btn = gr.Button("Delete…", variant="stop")
                with gr.Row(visible=False) as self.confirm_row:
                    self.confirm_text = gr.Markdown()
                    self.confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="confirm-delete")
                    self.keep_btn = gr.Button("Keep it")
                with gr.Row():
                    self.zip_btn = gr.Button("Download as zip")
                    self.zip_file = gr.File(label="Zip", elem_id="run-zip")
                with gr.Row():
                    self.repo_id = gr.Textbox(label="Hub repository", placeholder="your-name/my-model")
                    self.token = gr.Textbox(
                        label="Hub token (write)",
                        type="password",
                        placeholder="leave empty to use HF_TOKEN",
                        info="Used once, never stored.",
                    )
                    self.private = gr.Checkbox(True, label="Private")
                self.push_btn = gr.Button("Push to the hub")
                self.pushed = gr.Markdown()
                self.command = gr.Code(
                    language="shell",
                    interactive=False,
                    elem_id="run-command",
                    lines=2,
                    label="This run from the command line",
                )
            with gr.Accordion("Owner", open=False, visible=access.public):
                with gr.Row():
                    self.stop_source_btn = gr.Button("Stop every run from the chosen run's visitor and address")
                    self.clear_queue_btn = gr.Button("Clear the queue (every waiting run)")

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the tab's events."""
        visitor, listing = self.visitor_state, [self.table, self.compared, self.selected]
        self.tab.select(self.listing, visitor, listing, api_name=False)
        self.refresh_btn.click(self.listing, visitor, listing, api_name="list_runs")
        compare_outputs = [self.compare_loss, self.compare_ppl, self.differences]
        for trigger in (self.compared.change, self.x_axis.change):
            trigger(self.compare, [self.compared, self.x_axis], compare_outputs, api_name=False)
        api_inputs = [gr.Textbox(visible=False), gr.Textbox(visible=False)]  # run names (comma-separated), x axis
        gr.Button(visible=False).click(self.compare, api_inputs, compare_outputs, api_name="compare")
        actions = [self.label_btn, self.resume_btn, self.stop_btn, self.delete_btn, self.zip_btn, self.push_btn]
        self.selected.change(
            self.selected_changed,
            [visitor, self.selected],
            [self.label, self.confirm_row, self.rights, self.zip_file, self.pushed, *actions],
            api_name=False,
        )
        self.selected.change(self.command_line, [visitor, self.selected], self.command, api_name=False)
        self.label_btn.click(self.set_label, [visitor, self.selected, self.label], listing, api_name="set_label")
        self.resume_btn.click(
            self.resume, [visitor, self.selected], [*listing, self.watched, self.tabs], api_name="resume"
        )
        self.stop_btn.click(self.stop, [visitor, self.selected], listing, api_name="stop_run")
        self.delete_btn.click(self.ask_delete, self.selected, [self.confirm_row, self.confirm_text], api_name=False)
        self.keep_btn.click(lambda: gr.update(visible=False), None, self.confirm_row, api_name=False)
        self.confirm_btn.click(self.delete, [visitor, self.selected], listing, api_name="delete").then(
            lambda: (gr.update(visible=False), None), None, [self.confirm_row, self.zip_file], api_name=False
        )
        self.zip_btn.click(self.export_zip, [visitor, self.selected], self.zip_file, api_name="export_zip")
        self.push_btn.click(
            self.push, [visitor, self.selected, self.repo_id, self.token, self.private], self.pushed, api_name="push"
        )
        gr.Button(visible=False).click(self.runs_json, visitor, gr.Textbox(visible=False), api_name="runs")
        self.stop_source_btn.click(self.stop_source, [visitor, self.selected], listing, api_name="stop_source")
        self.clear_queue_btn.click(self.clear_queue, visitor, listing, api_name="clear_queue")

    def listing(self, visitor=None, request: gr.Request = None):
        """The runs table and the run choices."""
        visitor = self.access.visitor(visitor, request)
        listed, count = self._listed(), len(self.studio.index)
        rows = [
            [*row, "yes" if visitor.admin or visitor.started(identity) else "", run.name]
            for run, identity, row in listed
        ]
        choices = [(f"{identity.label} ({run.name})", run.name) for run, identity, _ in listed]
        label = "Every run, newest first" if count <= len(listed) else f"The newest {len(listed):,} of {count:,} runs"
        return gr.update(value=rows, label=label), gr.update(choices=choices), gr.update(choices=choices)

    def _listed(self) -> list[tuple[RunDir, object, list[str]]]:
        """The newest LISTED_RUNS runs as (run, identity, its table row but the visitor's column and its name): kept
        while the runs folder's index sees no change, the rows of runs that wait or train made again each time (their
        status and steps move on)."""
        active = set(self.studio.active_runs())  # first: a run that ended since counts as a change
        with self._listing_lock:
            if self._listing[0] != self.studio.index.version:
                runs = self.studio.runs(LISTED_RUNS)
                self._listing = (self.studio.index.version, [(run, run.identity(), _row(run)) for run in runs])
            listed = self._listing[1]
        return [(entry[0], entry[0].identity(), _row(entry[0])) if entry[0] in active else entry for entry in listed]

    def compare(self, names, x_axis):
        """Loss and perplexity curves of the chosen runs overlaid, and the settings in which they differ; gr.Error
        (a `refusal`) for too many runs or a name that is not a run."""
        if isinstance(names, str):  # the API takes names separated by commas
            names = [name.strip() for name in names.split(",") if name.strip()]
        names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
        if len(names) > MAX_COMPARED:
            raise refusal(f"run: choose at most {MAX_COMPARED} runs to compare")
        try:
            runs = [self.studio.run(name) for name in names]
            x_axis = x_axis if x_axis in figures.X_AXES else "steps"
        except ValueError as error:
            raise refusal(error) from None
        names = display_names(runs)
        loss, ppl = figures.compare_figures([(name, self.studio.events(run)) for name, run in zip(names, runs)], x_axis)
        return loss, ppl, settings_table(runs)

    def selected_changed(self, visitor, run_name, request: gr.Request):
        """The chosen run's label, and what this visitor may do with it (said before they click)."""
        visitor = self.access.visitor(visitor, request)
        try:
            run = self.studio.run(run_name)
        except ValueError:
            return ("", gr.update(visible=False), "", None, "", *[gr.update(interactive=False)] * 6)
        yours = self.access.may_control(visitor, run)
        rights = (
            ""
            if not self.access.public
            else (
                "This is your run: you can relabel, resume, stop, delete, download and push it."
                if yours
                else "Another visitor started this run: you can compare it and use its model in Fill-mask; only "
                "they (or the owner) can change, download or push it."
            )
        )
        return (
            run.identity().label,
            gr.update(visible=False),
            f"<small>{rights}</small>",
            None,
            "",
            *[gr.update(interactive=yours)] * 6,
        )

    def command_line(self, visitor, run_name, request: gr.Request) -> str:
        """The CLI line that repeats the chosen run's settings, for whoever may control the run (it names their
        uploaded file); empty otherwise."""
        try:
            run = self.studio.run(run_name)
            if not self.access.may_control(self.access.visitor(visitor, request), run):
                return ""
            return command_line(run.config())
        except ValueError:
            return ""

    def set_label(self, visitor, run_name, label, request: gr.Request):
        """Rename a run as listed; gr.Error (a refusal) when the visitor may not, or the label is empty."""

        def relabel(run: RunDir) -> None:
            run.set_label(_clean_label(label))
            self.studio.index.changed(run)

        run = self._act(visitor, run_name, request, "relabel", relabel)
        gr.Info(f"Label saved: {escaped(run.identity().label)}.")
        return self.listing()

    def resume(self, visitor, run_name, request: gr.Request):
        """Queue a stopped or interrupted run to continue from its checkpoint and show it in the Train tab; gr.Error
        (a refusal) when the visitor may not, or the run cannot resume."""

        def resume(run: RunDir) -> None:
            with self.access.admitting():  # a resumed run is active too: the same limits as Start
                self.access.check_start(
                    self.access.visitor(visitor, request), self.studio.active_runs(), self.studio.root
                )
                self.studio.queue.resume(run)

        run = self._act(visitor, run_name, request, "resume", resume)
        gr.Info(f"Run {escaped(run.identity().label)} continues from its checkpoint; the Train tab shows it.")
        return *self.listing(), run.name, gr.Tabs(selected="train")

    def stop(self, visitor, run_name, request: gr.Request):
        """Stop a training run after its current step (it keeps its checkpoint), or take a waiting one out; gr.Error
        (a refusal) when the visitor may not, or there is nothing this process can stop."""

        def stop(run: RunDir) -> tuple[str, str]:
            """The run's label (a cancelled new run is deleted) and what Stop did."""
            return run.identity().label, self.studio.stop(run)

        label, done = self._act(visitor, run_name, request, "stop", stop)
        gr.Info(
            f"Run {escaped(label)} was waiting in the queue; it is taken out."
            if done == CANCELLED
            else f"Run {escaped(label)} stops after its current step and keeps its checkpoint."
        )
        return self.listing()

    def stop_source(self, visitor, run_name, request: gr.Request):
        """Owner only: stop or take out of the queue every run of the chosen run's visitor, account or address;
        gr.Error (a refusal) for anyone else or a name that is not a run."""
        try:
            self._check_owner(visitor, request)
            chosen = self.studio.run(run_name).identity()
            same = [run for run in self.studio.runs() if _same_source(run.identity(), chosen)]
            count = self.studio.stop_all(same)
        except ValueError as error:
            raise refusal(error) from None
        gr.Info(f"Stopped or cancelled {count} run(s).")
        return self.listing(visitor, request)

    def clear_queue(self, visitor, request: gr.Request):
        """Owner only: take every waiting run out of the queue; gr.Error (a refusal) for anyone else."""
        try:
            self._check_owner(visitor, request)
            count = self.studio.stop_all(self.studio.queue.waiting())
        except ValueError as error:
            raise refusal(error) from None
        gr.Info(f"Took {count} waiting run(s) out of the queue.")
        return self.listing(visitor, request)

    def _check_owner(self, visitor, request) -> None:
        """ValueError in plain words unless the visitor has the owner's rights."""
        if not self.access.visitor(visitor, request).admin:
            raise ValueError("owner: only the Space's owner can act on other visitors' runs")

    def ask_delete(self, run_name):
        """The confirmation question before deleting; gr.Error (a `refusal`) for a name that is not a run."""
        try:
            run = self.studio.run(run_name)
        except ValueError as error:
            raise refusal(error) from None
        return gr.update(visible=True), (
            f"Delete run **{run.name}** with its model and checkpoints? This cannot be undone."
        )

    def delete(self, visitor, run_name, request: gr.Request):
        """Delete a run and everything it saved; gr.Error (a refusal) when the visitor may not, or it is training."""
        run = self._act(visitor, run_name, request, "delete", self.studio.delete)
        gr.Info(f"Run {run.name} is deleted.")
        return self.listing()

    def export_zip(self, visitor, run_name, request: gr.Request):
        """A zip of the run's model, card and results to download; gr.Error (a refusal) when the visitor may not, the
        run has not completed, or the disk has no room for it.

        The zip is served from its run's folder (a Gradio static path), not copied into Gradio's cache: one file per
        version of a run, counted in the run's size, and gone with the run, old links included."""

        def zipped(run: RunDir) -> str:
            if not run.export_path.is_file():
                self.access.check_room(self.studio.root, "download", _bytes_in(run.model_dir()))
            archive = zip_run(run)
            if run.export_folder not in self._served:
                gr.set_static_paths([run.export_folder])
                self._served.add(run.export_folder)
            return str(archive)

        return self._act(visitor, run_name, request, "download", zipped)

    def push(
        self, visitor, run_name, repo_id, token, private, request: gr.Request, oauth_token: gr.OAuthToken | None = None
    ):
        """Push the run to the hub with its model card; the token is used once and never kept. gr.Error (a refusal)
        in plain words when the visitor may not, has no token to use, or the push fails."""

        def pushed(run: RunDir) -> str:
            """Push with the token this visitor may use; its URL (ValueError as `push_token` and `push_run`)."""
            key = self.access.push_token(
                self.access.visitor(visitor, request), token, oauth_token.token if oauth_token else None
            )
            return push_run(run, repo_id if isinstance(repo_id, str) else "", key, private is not False)

        return f"Pushed to {self._act(visitor, run_name, request, 'push', pushed)}"

    def _act(self, visitor, run_name, request, action: str, do):
        """Run `do(run)` on the named run if the visitor may; a refusal in plain words otherwise."""
        visitor = self.access.visitor(visitor, request)
        try:
            run = self.studio.run(run_name)
            self.access.check_control(visitor, run, action)
            result = do(run)
        except ValueError as error:
            raise refusal(error) from None
        return run if result is None else result

    def runs_json(self, visitor, request: gr.Request) -> str:
        """Every run with its status and figures, as a JSON string (for API clients)."""
        visitor = self.access.visitor(visitor, request)
        out = []
        for run in self.studio.runs():
            identity, results, status = run.identity(), run.results(), run.status()
            out.append(
                {
                    "name": run.name,
                    "label": identity.label,
                    "status": status,
                    "model": hide_paths(run.config().model),
                    "created": identity.created,
                    "resumable": run.resumable(),
                    "yours": self.access.may_control(visitor, run),
                    "position": self.studio.queue.position(run) if status == QUEUED else None,
                    "results": _public_results(results) if results and status not in {RUNNING, QUEUED} else None,
                }
            )
        return json.dumps(out)


def _same_source(identity, chosen) -> bool:
    """Whether a run came from the same browser, account or address as the chosen one."""
    return any(
        value is not None and value == getattr(chosen, name)
        for name in ("owner", "user", "address")
        if (value := getattr(identity, name))
    )


def _public_results(results) -> dict:
    """A run's results for anyone to read (no path of this machine in them)."""
    return {key: hide_paths(value) if isinstance(value, str) else value for key, value in results.to_dict().items()}


def _bytes_in(folder: Path | None) -> int:
    """Bytes of the files under `folder` (0 for none): what a zip of it takes at most, as it compresses."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder else 0


def _row(run: RunDir) -> list[str]:
    """One line of the runs table, but its last two columns (whether it is the visitor's, its name)."""
    identity, config, status = run.identity(), run.config(), run.status()
    results = run.results() if status not in {RUNNING, QUEUED} else None
    number = "" if results is None else f"{results.steps:,}"
    return [
        identity.label,
        status,
        hide_paths(config.model),
        config.dataset,
        _fmt(results and results.base_perplexity),
        _fmt(results and results.final_perplexity),
        "" if results is None or results.final_top5 is None else f"{results.final_top5:.0%}",
        number,
        board.duration(results.seconds) if results else "",
        time.strftime("%Y-%m-%d %H:%M", time.localtime(identity.created)),
    ]


def _fmt(value: float | None) -> str:
    """A perplexity for the table."""
    return "" if value is None else f"{value:,.2f}"


def _clean_label(label) -> str:
    """A label as one line of text, or a refusal."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError("label: type a name for the run")
    return " ".join(label.split())[:MAX_LABEL_CHARS]


COMPARES = "perplexity compares with the first's"  # the comparison table's first row


def settings_table(runs: list[RunDir]) -> dict:
    """The settings in which the runs differ, one row each, one column per run; first, with two runs or more,
    whether each run's perplexity compares with the first's (the same held-out tokens and hidden words)."""
    configs = [run.config() for run in runs]
    values = [config.to_dict() for config in configs]
    names = [name for name in TrainConfig.__dataclass_fields__ if name not in PRIVATE_SETTINGS]
    differing = [name for name in names if len({json.dumps(c.get(name)) for c in values}) > 1]
    headers = ["setting", *display_names(runs)]
    rows = [[name, *[str(c.get(name)) for c in values]] for name in differing]
    if len(configs) > 1:
        against_first = [held_out_difference(configs[0], config) for config in configs[1:]]
        said = ["the first", *[f"no: {why}" if why else "yes" for why in against_first]]
        rows.insert(0, [COMPARES, *said])
    return {"headers": headers, "data": rows}


def display_names(runs: list[RunDir]) -> list[str]:
    """The runs' labels, with the end of the run's name added where two labels are the same."""
    labels = [run.identity().label or run.name for run in runs]
    return [f"{label} ({run.name[-4:]})" if labels.count(label) > 1 else label for label, run in zip(labels, runs)]
