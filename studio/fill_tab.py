"""The Fill-mask tab: two models side by side on a sentence with masks; a Generate view for causal models."""

from __future__ import annotations

import gradio as gr

from mlm_core.config import DEFAULT_CAUSAL_MODEL, DEFAULT_MODEL
from mlm_core.service import playground
from mlm_core.service.playground import STARTER, default_examples, is_online
from mlm_core.service.shown import place
from mlm_core.service.workspace import COMPLETED, INTERRUPTED, RUN_PREFIX, STOPPED, Workspace

from . import figures, lent_gpu
from .access import Access
from .text import escaped, refusal

# The default run's held-out probe sentences, with their answers (written by `python -m starter`).
EXAMPLES = [[e["text"], e["answer"]] for e in default_examples()] or [
    ["An assignment statement evaluates the <mask> list.", "expression"]
]
SURPRISE_EXAMPLE = (
    "An assignment statement evaluates the expression list and assigns the single resulting object "
    "to each of the target lists, from left to right."
)
SURPRISE_SCALE_BITS = 20  # a word this surprising (or more) is shown in full red
PREDICTION_HEADERS = ["mask", "rank", "word", "probability", "text"]
# Fill-mask requests answered at once: their forward passes are merged into one (`mlm_core.models.batched`), so
# more at once share the model's time instead of queueing (the page's other events keep Gradio's default of 4).
FILLS_AT_ONCE = 32
LISTED_RUNS = 100  # the newest runs whose models are offered (an older one is still chosen by typing run:NAME)


class FillTab:
    """Lays out the Fill-mask tab and answers its events."""

    def __init__(self, studio: Workspace, access: Access):
        self.studio, self.access = studio, access
        with gr.Tab("Fill-mask", id="fill") as self.tab:
            with gr.Group() as self.mask_view:
                with gr.Row():
                    self.text = gr.Textbox(
                        EXAMPLES[0][0],
                        label="Text with <mask> (or [MASK]); up to 5 masks",
                        lines=2,
                        elem_id="fill-text",
                        scale=4,
                    )
                    self.answer = gr.Textbox(
                        EXAMPLES[0][1],
                        label="Right word (if you know it)",
                        elem_id="fill-answer",
                        info="Shows where each model ranks it.",
                        scale=1,
                    )
                self.examples = gr.Examples(
                    EXAMPLES,
                    inputs=[self.text, self.answer],
                    label="Held-out sentences of the built-in corpus, with the hidden word",
                )
                with gr.Row():
                    self.top_k = gr.Slider(
                        1, 20, 5, step=1, label="top_k", info="How many guesses to show per mask.", elem_id="top-k"
                    )
                    self.model_a = gr.Dropdown(
                        label="Model A", info="Usually the base model.", allow_custom_value=True, elem_id="model-a"
                    )
                    self.model_b = gr.Dropdown(
                        label="Model B", info="Usually your fine-tuned run.", allow_custom_value=True, elem_id="model-b"
                    )
                self.fill_btn = gr.Button("Fill the mask", variant="primary", elem_id="fill-button")
                with gr.Row():
                    with gr.Column():
                        self.note_a = gr.HTML(elem_id="note-a")
                        self.plot_a = gr.Plot(label="Model A", elem_id="plot-a")
                        self.table_a = gr.Dataframe(
                            headers=PREDICTION_HEADERS, datatype="str", wrap=True, elem_id="table-a"
                        )
                    with gr.Column():
                        self.note_b = gr.HTML(elem_id="note-b")
                        self.plot_b = gr.Plot(label="Model B", elem_id="plot-b")
                        self.table_b = gr.Dataframe(
                            headers=PREDICTION_HEADERS, datatype="str", wrap=True, elem_id="table-b"
                        )
                with gr.Accordion("Surprise view: how surprised each model is by every word", open=False):
                    self.paragraph = gr.Textbox(
                        SURPRISE_EXAMPLE,
                        lines=3,
                        label="A paragraph",
                        elem_id="surprise-text",
                        info="Each word is hidden in turn; the redder, the more the model "
                        "was surprised by it (bits of surprise).",
                    )
                    self.surprise_btn = gr.Button("Show surprise", elem_id="surprise-button")
                    with gr.Row():
                        self.surprise_a = gr.HighlightedText(
                            label="Model A", elem_id="surprise-a", show_legend=False, combine_adjacent=False
                        )
                        self.surprise_b = gr.HighlightedText(
                            label="Model B", elem_id="surprise-b", show_legend=False, combine_adjacent=False
                        )
                    self.changes = gr.Dataframe(
                        headers=["word", "surprise under A (bits)", "under B (bits)"],
                        datatype="str",
                        label="Words that surprise B least compared with A",
                        elem_id="surprise-changes",
                    )
            with gr.Group(visible=False) as self.generate_view:
                gr.Markdown("Model A is a causal model: it continues text instead of filling masks.")
                self.prompt = gr.Textbox(label="Prompt", lines=2)
                with gr.Row():
                    self.new_tokens = gr.Slider(1, 256, 50, step=1, label="Max new tokens")
                    self.temperature = gr.Slider(
                        0.1, 2.0, 1.0, step=0.05, label="Temperature", info="Higher is more adventurous."
                    )
                    self.top_p = gr.Slider(
                        0.1,
                        1.0,
                        0.95,
                        step=0.01,
                        label="top_p",
                        info="Sample only from the likeliest words that add up to this share.",
                    )
                    self.seed = gr.Number(0, label="Seed", precision=0)
                self.gen_btn = gr.Button("Generate", variant="primary")
                self.generated = gr.Textbox(label="Generated text", lines=6)

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the tab's events: results follow the text, top_k and the examples."""
        models = [self.model_a, self.model_b]
        self.tab.select(self.open, None, models, api_name=False)
        demo.load(self.open, None, models, api_name=False)
        self.model_a.change(self.model_a_changed, self.model_a, [self.mask_view, self.generate_view], api_name=False)
        fill_inputs = [self.text, self.top_k, *models, self.answer]
        fill_outputs = [self.plot_a, self.table_a, self.note_a, self.plot_b, self.table_b, self.note_b]
        together = dict(concurrency_id="fill", concurrency_limit=FILLS_AT_ONCE)
        self.fill_btn.click(self.fill, fill_inputs, fill_outputs, api_name="fill_mask", **together)
        for trigger in (self.text.submit, self.answer.submit):
            trigger(self.fill, fill_inputs, fill_outputs, api_name=False, **together)
        self.top_k.change(self.fill, fill_inputs, fill_outputs, api_name=False, trigger_mode="always_last", **together)
        self.examples.load_input_event.then(self.fill, fill_inputs, fill_outputs, api_name=False, **together)
        self.surprise_btn.click(
            self.surprise,
            [self.paragraph, *models],
            [self.surprise_a, self.surprise_b, self.changes],
            api_name="surprise",
        )
        self.gen_btn.click(
            self.generate,
            [self.model_a, self.prompt, self.new_tokens, self.temperature, self.top_p, self.seed],
            self.generated,
            api_name="generate",
        )

    def _listed(self) -> list[tuple[str, str, bool]]:
        """Models to compare, as (label, value, finished): the starter, hub bases when online, each completed run,
        and each stopped or interrupted one at its last checkpoint (not finished), among the newest LISTED_RUNS."""
        listed = [("starter (built-in)", STARTER, True)]
        if is_online():
            listed += [(m, m, True) for m in (DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL)]
        for run in self.studio.runs(LISTED_RUNS):
            status = run.status()
            if status != COMPLETED and (status not in {STOPPED, INTERRUPTED} or run.checkpoint() is None):
                continue
            results = run.results()
            ppl = (
                f" (perplexity {results.base_perplexity:,.0f} → {results.final_perplexity:,.0f})"
                if results and results.final_perplexity is not None and results.base_perplexity is not None
                else ""
            )
            where = "" if status == COMPLETED else f", {status} at step {results.steps:,}" if results else f", {status}"
            listed.append((f"run {run.identity().label}{ppl}{where}", f"{RUN_PREFIX}{run.name}", status == COMPLETED))
        return listed

    def open(self):
        """Refresh the model lists; by default compare the starter with the newest completed run."""
        listed = self._listed()
        newest = next((value for _, value, done in listed if done and value.startswith(RUN_PREFIX)), STARTER)
        choices = [(label, value) for label, value, _ in listed]
        return gr.update(choices=choices, value=STARTER), gr.update(choices=choices, value=newest)

    @staticmethod
    def model_a_changed(model: str):
        """Show the fill-mask view for masked models and the generate view for causal ones."""
        causal = playground.generates(model)
        return gr.update(visible=not causal), gr.update(visible=causal)

    def fill(self, text, top_k, model_a, model_b, answer=""):
        """Fill the masks with two models side by side: charts, tables, and where each ranks the right word;
        gr.Error (a `refusal`) in plain words for bad input or a model that cannot fill masks."""
        models = [model for model in (model_a, model_b) if model]
        try:
            answer = answer if isinstance(answer, str) else ""
            requests = tuple(playground.FillRequest(model, text, top_k, answer) for model in models)
            for request in requests:
                playground.load(request.model)
        except ValueError as error:
            raise refusal(error) from None
        answers = iter(lent_gpu.fill(requests) if requests else ())
        outputs = []
        for model in (model_a, model_b):
            if not model:
                outputs += [None, None, ""]
                continue
            filled = next(answers)
            outputs += [
                figures.predictions_figure(filled.guesses, _short(filled.model)),
                figures.predictions_table(filled.guesses),
                answer_note(requests[0].answer, filled),
            ]
        return outputs

    def surprise(self, text, model_a, model_b):
        """Each word of a paragraph coloured by how surprised each model is by it, and the biggest changes;
        gr.Error (a `refusal`) in plain words for bad input or a model that cannot fill masks."""
        models = [model for model in (model_a, model_b) if model]
        try:
            for model in models:
                playground.load(model)
        except ValueError as error:
            raise refusal(error) from None
        answers = iter(lent_gpu.surprise(tuple((model, text) for model in models)) if models else ())
        scored = [next(answers) if model else [] for model in (model_a, model_b)]
        return (*[surprise_highlights(pieces) for pieces in scored], surprise_changes(*scored))

    def generate(self, model, prompt, max_new_tokens, temperature, top_p, seed):
        """Continue a prompt with a causal model; gr.Error (a `refusal`) in plain words for bad input or a model
        that cannot generate."""
        try:
            request = playground.GenerateRequest(model, prompt, max_new_tokens, temperature, top_p, seed)
            playground.load(request.model)
        except ValueError as error:
            raise refusal(error) from None
        return lent_gpu.generate(request)


def answer_note(answer: str, filled: playground.Filled) -> str:
    """Where the model ranks the right word (HTML; the word is the visitor's, so it is escaped)."""
    if not answer or len(filled.guesses) != 1:
        return ""
    if filled.answer_rank is None:
        return f"<small>The right word <b>{escaped(answer)}</b> is too long for this text and model.</small>"
    return (
        f"<small>The right word <b>{escaped(answer)}</b> is {place(filled.answer_rank, 'guess ')} "
        f"({filled.answer_probability:.1%}).</small>"
    )


def surprise_highlights(pieces: list[tuple[str, float | None]]) -> list[tuple[str, float | None]]:
    """Words with a score from 0 (expected) to 1 (very surprising) for a HighlightedText."""
    return [(word, None if bits is None else round(min(bits / SURPRISE_SCALE_BITS, 1.0), 3)) for word, bits in pieces]


def surprise_changes(a: list, b: list, n: int = 8) -> list[list[str]]:
    """The words model B finds least surprising compared with model A: what fine-tuning taught it."""
    if not a or not b:
        return []
    pairs = [(word.strip(), x, y) for (word, x), (_, y) in zip(a, b) if x is not None and y is not None]
    pairs.sort(key=lambda pair: pair[2] - pair[1])
    return [[word, f"{x:.1f}", f"{y:.1f}"] for word, x, y in pairs[:n]]


def _short(model: str) -> str:
    """A model's name for a chart title."""
    return model.removeprefix(RUN_PREFIX)
