"""The Fill-mask tab: two models side by side on a sentence with masks; a Generate view for causal models."""

from __future__ import annotations

import gradio as gr

from mlm_core.config import DEFAULT_CAUSAL_MODEL, DEFAULT_MODEL
from mlm_core.hub import is_online
from mlm_core.modeling import STARTER
from mlm_core.rundir import COMPLETED, RUN_PREFIX

from . import figures
from .access import Access
from .context import Studio
from .text import refusal

try:  # ZeroGPU Spaces lend a GPU per call; elsewhere the decorator is a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        """No ZeroGPU here: run as is."""
        return fn

EXAMPLES = ["An assignment statement evaluates the <mask> list.", "The <mask> statement exits the innermost loop.",
            "A function returns <mask> when it has no return.", "Paris is the <mask> of France.",
            "The <mask> of the list is changed in place."]
PREDICTION_HEADERS = ["mask", "rank", "word", "probability", "text"]


def is_causal(model: str) -> bool:
    """Whether `model` is a causal LM (unknown models count as masked until they load)."""
    from mlm_core.modeling import load_config
    from mlm_core.tasks import detect_task

    try:
        return bool(model) and detect_task(load_config(model)).inference == "generate"
    except (ValueError, OSError):
        return False


class FillTab:
    """Lays out the Fill-mask tab and answers its events."""

    def __init__(self, studio: Studio, access: Access):
        self.studio, self.access = studio, access
        with gr.Tab("Fill-mask", id="fill") as self.tab:
            with gr.Group() as self.mask_view:
                self.text = gr.Textbox(EXAMPLES[0], label="Text with <mask> (or [MASK]); up to 5 masks", lines=2,
                                       elem_id="fill-text")
                gr.Examples(EXAMPLES, inputs=self.text)
                with gr.Row():
                    self.top_k = gr.Slider(1, 20, 5, step=1, label="top_k", info="How many guesses to show per mask.",
                                           elem_id="top-k")
                    self.model_a = gr.Dropdown(label="Model A", info="Usually the base model.",
                                               allow_custom_value=True)
                    self.model_b = gr.Dropdown(label="Model B", info="Usually your fine-tuned run.",
                                               allow_custom_value=True)
                self.fill_btn = gr.Button("Fill the mask", variant="primary", elem_id="fill-button")
                with gr.Row():
                    with gr.Column():
                        self.plot_a = gr.Plot(label="Model A", elem_id="plot-a")
                        self.table_a = gr.Dataframe(headers=PREDICTION_HEADERS, datatype="str")
                    with gr.Column():
                        self.plot_b = gr.Plot(label="Model B", elem_id="plot-b")
                        self.table_b = gr.Dataframe(headers=PREDICTION_HEADERS, datatype="str")
            with gr.Group(visible=False) as self.generate_view:
                gr.Markdown("Model A is a causal model: it continues text instead of filling masks.")
                self.prompt = gr.Textbox(label="Prompt", lines=2)
                with gr.Row():
                    self.new_tokens = gr.Slider(1, 256, 50, step=1, label="Max new tokens")
                    self.temperature = gr.Slider(0.1, 2.0, 1.0, step=0.05, label="Temperature",
                                                 info="Higher is more adventurous.")
                    self.top_p = gr.Slider(0.1, 1.0, 0.95, step=0.01, label="top_p",
                                           info="Sample only from the likeliest words that add up to this share.")
                    self.seed = gr.Number(0, label="Seed", precision=0)
                self.gen_btn = gr.Button("Generate", variant="primary")
                self.generated = gr.Textbox(label="Generated text", lines=6)

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the tab's events."""
        models = [self.model_a, self.model_b]
        self.tab.select(self.open, None, models, api_name=False)
        demo.load(self.open, None, models, api_name=False)
        self.model_a.change(self.model_a_changed, self.model_a, [self.mask_view, self.generate_view], api_name=False)
        fill_inputs, fill_outputs = [self.text, self.top_k, *models], [self.plot_a, self.table_a, self.plot_b,
                                                                       self.table_b]
        self.fill_btn.click(self.fill, fill_inputs, fill_outputs, api_name="fill_mask")
        self.text.submit(self.fill, fill_inputs, fill_outputs, api_name=False)
        self.gen_btn.click(self.generate, [self.model_a, self.prompt, self.new_tokens, self.temperature, self.top_p,
                                           self.seed], self.generated, api_name="generate")

    def choices(self) -> list[tuple[str, str]]:
        """Models to compare: the starter, hub bases when online, and every completed run."""
        choices = [("starter (built-in)", STARTER)]
        if is_online():
            choices += [(m, m) for m in (DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL)]
        for run in self.studio.runs():
            if run.status() == COMPLETED:
                results = run.results()
                ppl = f" (perplexity {results.base_perplexity:,.0f} → {results.final_perplexity:,.0f})" \
                    if results and results.final_perplexity is not None else ""
                choices.append((f"run {run.identity().label}{ppl}", f"{RUN_PREFIX}{run.name}"))
        return choices

    def open(self):
        """Refresh the model lists; by default compare the starter with the newest fine-tuned run."""
        choices = self.choices()
        newest = next((value for _, value in choices if value.startswith(RUN_PREFIX)), STARTER)
        return gr.update(choices=choices, value=STARTER), gr.update(choices=choices, value=newest)

    @staticmethod
    def model_a_changed(model: str):
        """Show the fill-mask view for masked models and the generate view for causal ones."""
        causal = is_causal(model)
        return gr.update(visible=not causal), gr.update(visible=causal)

    @gpu
    def fill(self, text, top_k, model_a, model_b):
        """Fill the masks with two models side by side: charts and tables."""
        from mlm_core.inference import fill_mask

        outputs = []
        try:
            top_k = _whole(top_k, "top_k")
            for model in (_model(model_a), _model(model_b)):
                if not model:
                    outputs += [None, None]
                    continue
                results = fill_mask(model, text, top_k=top_k)
                outputs += [figures.predictions_figure(results, _short(model)), figures.predictions_table(results)]
        except ValueError as error:
            raise refusal(error) from None
        return outputs

    @gpu
    def generate(self, model, prompt, max_new_tokens, temperature, top_p, seed):
        """Continue a prompt with a causal model."""
        from mlm_core.inference import generate

        try:
            return generate(_model(model) or "", prompt, max_new_tokens=_whole(max_new_tokens, "max_new_tokens"),
                            temperature=_number(temperature, "temperature"), top_p=_number(top_p, "top_p"),
                            seed=None if seed in (None, "") else _whole(seed, "seed"))
        except ValueError as error:
            raise refusal(error) from None


def _model(value) -> str | None:
    """A model name from a dropdown (anything else an API client sent is refused)."""
    if value is None or isinstance(value, str):
        return value
    raise ValueError("model: choose a model by its name")


def _number(value, name: str) -> float:
    """A number from a slider or number box."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name}: must be a number")
    return float(value)


def _whole(value, name: str) -> int:
    """A whole number from a slider or number box."""
    number = _number(value, name)
    if number != int(number):
        raise ValueError(f"{name}: must be a whole number")
    return int(number)


def _short(model: str) -> str:
    """A model's name for a chart title."""
    return model.removeprefix(RUN_PREFIX)
