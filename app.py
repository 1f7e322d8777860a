"""MLM Studio: fine-tune a language model on your own text, watch it learn, then play with it (Gradio UI only)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from mlm_core import dashboard, plots  # noqa: E402
from mlm_core.config import DEFAULT_CAUSAL_MODEL, DEFAULT_MODEL, FILE_DATASET, TrainConfig, field_help  # noqa: E402
from mlm_core.events import Done, Error  # noqa: E402
from mlm_core.hub import is_online  # noqa: E402
from mlm_core.jobs import Busy, JobManager  # noqa: E402
from mlm_core.modeling import STARTER, describe_device, preload  # noqa: E402
from mlm_core.runs import list_runs, new_run_name, recover_runs, resume_config, run_dir, runs_root  # noqa: E402
from mlm_core.sources import FILE_SUFFIXES, MAX_UPLOAD_MB  # noqa: E402

try:  # ZeroGPU Spaces lend a GPU per call; elsewhere the decorator is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        """No ZeroGPU here: run as is."""
        return fn

preload()
JOBS = JobManager()  # the one owner of training state: every visitor sees the same run
RUNS = runs_root()
recover_runs(RUNS)  # a crash may have left half-written files behind: finish or remove them before serving
SOURCES = {"Built-in corpus (offline)": "builtin", "Hub dataset": "hub", "Upload a file": FILE_DATASET}
EXAMPLES = ["An assignment statement evaluates the <mask> list.", "The <mask> statement exits the innermost loop.",
            "A function returns <mask> when it has no return.", "Paris is the <mask> of France.",
            "The <mask> of the list is changed in place."]
POLL_S = 1.0


def header() -> str:
    """Which device serves and whether the hub is reachable."""
    online = is_online()
    hub = "🌐 Hugging Face hub reachable" if online else \
        "📴 Hub not reachable: the built-in corpus and starter model are in use"
    return f"# MLM Studio\nFine-tune a language model on text you care about, then ask it to fill in words.  \n" \
           f"**Device:** {describe_device()} · {hub}"


def model_choices() -> list[str]:
    """Base models offered in the Train tab (any hub id or local folder can be typed too)."""
    online = [DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL, "google-bert/bert-base-uncased", "FacebookAI/roberta-base"]
    return [STARTER, *online] if is_online() else [STARTER]


def config_from(model, source, hub_id, hub_slice, upload, column, block, mlm_p, epochs, lr, batch, max_steps,
                eval_steps, wwm, seed) -> TrainConfig:
    """The run's TrainConfig from the form; ValueError naming the field when something is off."""
    dataset = SOURCES.get(source, "builtin")
    name = new_run_name(model or "model", dataset if dataset != "hub" else hub_id or "hub")
    values = dict(model=(model or "").strip(), dataset=(hub_id or "").strip() if dataset == "hub" else dataset,
                  slice=(hub_slice or "train").strip(),
                  dataset_file=upload if dataset == FILE_DATASET else None, text_column=column or None,
                  block_size=_int(block, "block_size"), mlm_probability=mlm_p, epochs=_int(epochs, "epochs"),
                  learning_rate=lr, batch_size=_int(batch, "batch_size"),
                  max_steps=_int(max_steps, "max_steps") or None,
                  eval_steps=_int(eval_steps, "eval_steps"), whole_word_masking=bool(wwm), seed=_int(seed, "seed"),
                  output_dir=str(run_dir(RUNS, name)))
    return TrainConfig(**values)


def _int(value, name: str) -> int:
    """A whole number from a number box; ValueError naming the field otherwise."""
    if value is None or value == "":
        return 0
    if float(value) != int(float(value)):
        raise ValueError(f"{name}: must be a whole number (got {value})")
    return int(float(value))


def on_preview(*form):
    """Blocks, an example block with its masked tokens, and the time and memory estimate for this device."""
    from mlm_core.data import sample_texts
    from mlm_core.preflight import preview
    from mlm_core.probes import suggest_probes

    try:
        config = config_from(*form)
        result = preview(config)
        texts = sample_texts(config, result.text_column)
    except ValueError as error:
        raise _refusal(error) from None
    memory = result.memory_bytes / 2**30
    lines = [f"**{result.documents:,} documents → {result.tokens:,} tokens → {result.train_blocks:,} training and "
             f"{result.eval_blocks:,} evaluation blocks of {result.block_size} tokens** (text column "
             f"`{result.text_column}`).",
             f"**Estimate on {describe_device()}:** {result.total_steps:,} steps at {result.seconds_per_step:.2f} s "
             f"each (measured) → about **{dashboard.duration(result.estimated_seconds)}**, using about "
             f"**{memory:.1f} GiB** of memory.", *[f"ℹ️ {m}" for m in result.messages if "block_size" in m]]
    probes = "\n".join(suggest_probes(texts)) if result.task == "mlm" else ""
    return "\n\n".join(lines), result.example, probes or gr.skip(), result.text_column


def on_start(probes_text, *form):
    """Start a run on the worker thread; a plain warning when the form is off or a run is in progress."""
    try:
        config = config_from(*form)
        JOBS.start(config, probes=[p for p in (probes_text or "").splitlines() if p.strip()])
    except (Busy, ValueError) as error:
        raise _refusal(error) from None
    return refresh(-1)


def _refusal(error: Exception) -> gr.Error:
    """A refused action in plain words (an error toast; the app keeps serving)."""
    if isinstance(error, Busy):
        return gr.Error(f"A run is in progress, so a new one cannot start yet. {error} You can watch it in the "
                        "Train tab and use the Fill-mask tab meanwhile.", print_exception=False)
    return gr.Error(str(error), print_exception=False)


def on_stop():
    """Ask the run to stop after its current step; it keeps its checkpoint."""
    if not JOBS.stop():
        raise gr.Error("Nothing is running, so there is nothing to stop.", print_exception=False)
    return refresh(-1)


def on_resume(name):
    """Continue a stopped or interrupted run from its last checkpoint."""
    try:
        JOBS.start(resume_config(RUNS, name or ""), resume=True)
    except (Busy, ValueError) as error:
        raise _refusal(error) from None
    gr.Info(f"Run {name} resumed: watch it in the Train tab.")
    return refresh(-1)


def refresh(seen: int):
    """Dashboard updates from the current job; untouched components when no new event arrived."""
    job = JOBS.current
    events = list(job.events) if job else []
    if len(events) == seen and (job is None or job.status != "stopping"):
        return (gr.skip(),) * 6 + (seen,)
    for event in events[max(seen, 0):]:
        if isinstance(event, Error) and seen >= 0:
            gr.Warning(f"The run failed: {event.message}")
    state = job.status if job else "none"
    outcome = job.outcome if job else None
    result = dashboard.outcome_text(outcome.results if isinstance(outcome, Done) else None)
    return (dashboard.status_line(events, state), dashboard.progress_html(events), plots.loss_figure(events),
            plots.perplexity_figure(events), plots.probe_table(events), result, len(events))


def status_json() -> str:
    """The current run and its events as a JSON string (a string, so that clients do not take paths for files)."""
    job = JOBS.current
    if job is None:
        return json.dumps({"status": "none", "events": []})
    return json.dumps({"status": job.status, "run_dir": job.config.output_dir,
                       "events": [e.to_dict() for e in job.events]}, default=str)


def inference_choices() -> list[tuple[str, str]]:
    """Models for the Fill-mask tab: the starter, hub bases when online, and every completed run."""
    choices = [("starter (built-in)", STARTER)]
    if is_online():
        choices += [(m, m) for m in (DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL)]
    for run in list_runs(RUNS):
        if run.model_dir is not None:
            ppl = f"perplexity {run.base_perplexity:,.0f} → {run.final_perplexity:,.0f}" if run.final_perplexity else ""
            choices.append((f"run {run.name} ({ppl})", str(run.model_dir)))
    return choices


def on_playground_open():
    """Refresh the model lists; by default compare the starter with the newest fine-tuned run."""
    choices = inference_choices()
    newest = next((value for label, value in choices if label.startswith("run ")), STARTER)
    return gr.update(choices=choices, value=STARTER), gr.update(choices=choices, value=newest)


@gpu
def on_fill(text, top_k, model_a, model_b):
    """Fill the masks with two models side by side: charts and tables."""
    from mlm_core.inference import fill_mask

    outputs = []
    for model in (model_a, model_b):
        if not model:
            outputs += [None, None]
            continue
        try:
            results = fill_mask(model, text, top_k=int(top_k))
        except ValueError as error:
            raise _refusal(error) from None
        outputs += [plots.predictions_figure(results, _short(model)), plots.predictions_table(results)]
    return outputs


@gpu
def on_generate(model, prompt, max_new_tokens, temperature, top_p, seed):
    """Continue a prompt with a causal model."""
    from mlm_core.inference import generate

    try:
        return generate(model, prompt, max_new_tokens=int(max_new_tokens), temperature=temperature, top_p=top_p,
                        seed=None if seed in (None, "") else int(seed))
    except ValueError as error:
        raise _refusal(error) from None


def is_causal(model: str) -> bool:
    """Whether `model` is a causal LM (unknown models count as masked until they load)."""
    from mlm_core.modeling import CLM, load_config, task_of

    try:
        return bool(model) and task_of(load_config(model)) == CLM
    except (ValueError, OSError):
        return False


def default_learning_rate(model: str) -> float:
    """The guides' 2e-5 for pre-trained hub models; the small starter learns faster with 5e-4."""
    return 5e-4 if model == STARTER else 2e-5


def on_model_change(model):
    """Hide the masking knob for causal models and suggest a learning rate for the model."""
    return gr.update(visible=not is_causal(model)), gr.update(value=default_learning_rate(model))


def on_model_a_change(model):
    """Show the fill-mask view for masked models and the generate view for causal ones."""
    causal = is_causal(model)
    return gr.update(visible=not causal), gr.update(visible=causal)


def _short(model: str) -> str:
    """A model's name for a chart title."""
    return Path(model).parent.name if model.endswith("/model") else model


def runs_table() -> list[list]:
    """Every run with its status and perplexities."""
    return [[r.name, r.status, r.model, _fmt(r.base_perplexity), _fmt(r.final_perplexity)] for r in list_runs(RUNS)]


def _fmt(value):
    """A perplexity for the table."""
    return "" if value is None else round(value, 2)


def on_export_open():
    """The completed runs that can be exported, the resumable ones, and the table of all."""
    runs = list_runs(RUNS)
    done = [r.name for r in runs if r.model_dir is not None]
    resumable = [r.name for r in runs if r.resumable]
    return (gr.update(choices=done, value=done[0] if done else None),
            gr.update(choices=resumable, value=resumable[0] if resumable else None), runs_table())


def runs_json() -> str:
    """Every run with its status, as a JSON string (for API clients)."""
    return json.dumps([{"name": r.name, "status": r.status, "model": r.model, "resumable": r.resumable,
                        "base_perplexity": r.base_perplexity, "final_perplexity": r.final_perplexity,
                        "model_dir": None if r.model_dir is None else str(r.model_dir)} for r in list_runs(RUNS)])


def on_zip(name):
    """A zip of the run's model, card and results to download."""
    from mlm_core.export import zip_run

    try:
        return str(zip_run(run_dir(RUNS, name or ""), Path(tempfile.mkdtemp(prefix="mlm-export-"))))
    except ValueError as error:
        raise _refusal(error) from None


def on_push(name, repo_id, token, private):
    """Push the run to the hub with its model card; the token is used once and never kept."""
    from mlm_core.export import push_run

    try:
        url = push_run(run_dir(RUNS, name or ""), (repo_id or "").strip(), token or None, bool(private))
    except ValueError as error:
        raise _refusal(error) from None
    return f"Pushed to {url}"


def build() -> gr.Blocks:
    """Lay out the app and wire its events."""
    default_model = STARTER if not is_online() else DEFAULT_MODEL
    with gr.Blocks(title="MLM Studio") as demo:
        gr.Markdown(header())
        with gr.Tabs():
            with gr.Tab("Train", id="train"):
                with gr.Row():
                    with gr.Column(scale=2):
                        model = gr.Dropdown(model_choices(), value=default_model, allow_custom_value=True,
                                            label="Base model", info=field_help("model"))
                        source = gr.Radio(list(SOURCES), value=next(iter(SOURCES)), label="Data",
                                          info="Where your text comes from.")
                        hub_id = gr.Textbox(label="Hub dataset id", placeholder="e.g. dany0407/eli5_category",
                                            info=field_help("dataset"), visible=False)
                        upload = gr.File(label=f"Your text (.txt, .csv, .jsonl, .json; up to {MAX_UPLOAD_MB} MB)",
                                         visible=False, file_types=list(FILE_SUFFIXES), type="filepath")
                        hub_slice = gr.Textbox("train[:5000]", label="Rows (slice)", info=field_help("slice"))
                        column = gr.Textbox(label="Text column", placeholder="detected automatically",
                                            info=field_help("text_column"))
                        with gr.Row():
                            block = gr.Number(128, label="Block size", precision=0, info=field_help("block_size"))
                            mlm_p = gr.Slider(0.05, 0.5, 0.15, step=0.01, label="Masking probability",
                                              info=field_help("mlm_probability"))
                        with gr.Row():
                            epochs = gr.Number(1, label="Epochs", precision=0, info=field_help("epochs"),
                                               elem_id="epochs")
                            lr = gr.Number(default_learning_rate(default_model), label="Learning rate",
                                           info=field_help("learning_rate"))
                            batch = gr.Number(16, label="Batch size", precision=0, info=field_help("batch_size"))
                        with gr.Accordion("More settings", open=False):
                            max_steps = gr.Number(0, label="Max steps (0: no limit)", precision=0,
                                                  info=field_help("max_steps"))
                            eval_steps = gr.Number(0, label="Evaluate every N steps (0: each epoch)", precision=0,
                                                   info=field_help("eval_steps"))
                            wwm = gr.Checkbox(False, label="Whole-word masking", info=field_help("whole_word_masking"))
                            seed = gr.Number(42, label="Seed", precision=0, info=field_help("seed"))
                        probes = gr.Textbox(label="Probe sentences (one per line, each with <mask>)", lines=3,
                                            elem_id="probes",
                                            info="Re-scored at every evaluation so you can watch the guesses change.")
                        with gr.Row():
                            preview_btn = gr.Button("Preview data and estimate")
                            start_btn = gr.Button("Start", variant="primary")
                            stop_btn = gr.Button("Stop", variant="stop")
                        preview_md = gr.Markdown()
                        example = gr.HighlightedText(label="One training block (highlighted: hidden for the model "
                                                           "to guess)", color_map={"masked": "#f59e0b"},
                                                     combine_adjacent=False)
                    with gr.Column(scale=3):
                        status = gr.Markdown(elem_id="run-status")
                        progress = gr.HTML(elem_id="run-progress")
                        loss_plot = gr.Plot(label="Loss", elem_id="loss-plot")
                        ppl_plot = gr.Plot(label="Perplexity", elem_id="ppl-plot")
                        probe_table = gr.Dataframe(headers=["step", "probe", "top guesses"], label="Watch it learn",
                                                   interactive=False, wrap=True)
                        outcome = gr.Markdown(elem_id="run-outcome")
            with gr.Tab("Fill-mask", id="fill") as fill_tab:
                with gr.Group() as mask_view:
                    text = gr.Textbox(EXAMPLES[0], label="Text with <mask> (or [MASK]); up to 5 masks", lines=2,
                                      elem_id="fill-text")
                    gr.Examples(EXAMPLES, inputs=text)
                    with gr.Row():
                        top_k = gr.Slider(1, 20, 5, step=1, label="top_k", info="How many guesses to show per mask.",
                                          elem_id="top-k")
                        model_a = gr.Dropdown(label="Model A", info="Usually the base model.", allow_custom_value=True)
                        model_b = gr.Dropdown(label="Model B", info="Usually your fine-tuned run.",
                                              allow_custom_value=True)
                    fill_btn = gr.Button("Fill the mask", variant="primary", elem_id="fill-button")
                    with gr.Row():
                        with gr.Column():
                            plot_a = gr.Plot(label="Model A", elem_id="plot-a")
                            table_a = gr.Dataframe(headers=["mask", "rank", "word", "probability", "text"])
                        with gr.Column():
                            plot_b = gr.Plot(label="Model B", elem_id="plot-b")
                            table_b = gr.Dataframe(headers=["mask", "rank", "word", "probability", "text"])
                with gr.Group(visible=False) as generate_view:
                    gr.Markdown("Model A is a causal model: it continues text instead of filling masks.")
                    prompt = gr.Textbox(label="Prompt", lines=2)
                    with gr.Row():
                        new_tokens = gr.Slider(1, 256, 50, step=1, label="Max new tokens")
                        temperature = gr.Slider(0.1, 2.0, 1.0, step=0.05, label="Temperature",
                                                info="Higher is more adventurous.")
                        top_p = gr.Slider(0.1, 1.0, 0.95, step=0.01, label="top_p",
                                          info="Sample only from the likeliest words that add up to this share.")
                        gen_seed = gr.Number(0, label="Seed", precision=0)
                    gen_btn = gr.Button("Generate", variant="primary")
                    generated = gr.Textbox(label="Generated text", lines=6)
            with gr.Tab("Runs & export", id="export") as export_tab:
                runs = gr.Dataframe(headers=["run", "status", "base model", "base perplexity", "final perplexity"],
                                    label="Runs", interactive=False, elem_id="runs-table")
                export_run = gr.Dropdown(label="Completed run", allow_custom_value=True)
                zip_btn = gr.Button("Download as zip")
                zip_file = gr.File(label="Zip")
                with gr.Row():
                    repo_id = gr.Textbox(label="Hub repository", placeholder="your-name/my-model")
                    token = gr.Textbox(label="Hub token (write)", type="password",
                                       placeholder="leave empty to use HF_TOKEN", info="Used once, never stored.")
                    private = gr.Checkbox(True, label="Private")
                push_btn = gr.Button("Push to the hub")
                pushed = gr.Markdown()
                with gr.Row():
                    resume_run = gr.Dropdown(label="Stopped or interrupted run", allow_custom_value=True,
                                             info="Training continues from its last checkpoint.")
                    resume_btn = gr.Button("Resume training")

        form = [model, source, hub_id, hub_slice, upload, column, block, mlm_p, epochs, lr, batch, max_steps,
                eval_steps, wwm, seed]
        seen = gr.State(-1)
        board = [status, progress, loss_plot, ppl_plot, probe_table, outcome, seen]
        source.change(lambda s: (gr.update(visible=SOURCES[s] == "hub"), gr.update(visible=SOURCES[s] == FILE_DATASET)),
                      source, [hub_id, upload], api_name=False)
        preview_btn.click(on_preview, form, [preview_md, example, probes, column], api_name="preview")
        model.change(on_model_change, model, [mlm_p, lr], api_name=False)
        start_btn.click(on_start, [probes, *form], board, api_name="start")
        stop_btn.click(on_stop, None, board, api_name="stop")
        gr.Timer(POLL_S).tick(refresh, seen, board, api_name=False, show_progress="hidden")
        demo.load(refresh, seen, board, api_name=False)
        gr.Button(visible=False).click(status_json, None, gr.Textbox(visible=False), api_name="status")
        fill_tab.select(on_playground_open, None, [model_a, model_b], api_name=False)
        demo.load(on_playground_open, None, [model_a, model_b], api_name=False)
        model_a.change(on_model_a_change, model_a, [mask_view, generate_view], api_name=False)
        fill_btn.click(on_fill, [text, top_k, model_a, model_b], [plot_a, table_a, plot_b, table_b],
                       api_name="fill_mask")
        text.submit(on_fill, [text, top_k, model_a, model_b], [plot_a, table_a, plot_b, table_b], api_name=False)
        gen_btn.click(on_generate, [model_a, prompt, new_tokens, temperature, top_p, gen_seed], generated,
                      api_name="generate")
        export_tab.select(on_export_open, None, [export_run, resume_run, runs], api_name=False)
        resume_btn.click(on_resume, resume_run, board, api_name="resume")
        gr.Button(visible=False).click(runs_json, None, gr.Textbox(visible=False), api_name="runs")
        zip_btn.click(on_zip, export_run, zip_file, api_name="export_zip")
        push_btn.click(on_push, [export_run, repo_id, token, private], pushed, api_name="push")
    return demo


if __name__ == "__main__":
    build().queue(default_concurrency_limit=4).launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                                                      theme=gr.themes.Soft(), show_error=False,
                                                      max_file_size=f"{MAX_UPLOAD_MB}mb")
