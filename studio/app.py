"""The whole page: header, the three tabs, and the launch of the server."""

from __future__ import annotations

import os

import gradio as gr

from mlm_core.config import DEFAULT_CAUSAL_MODEL, DEFAULT_MODEL
from mlm_core.hub import is_online
from mlm_core.modeling import STARTER, describe_device, preload
from mlm_core.rundir import runs_root
from mlm_core.sources import MAX_UPLOAD_MB

from .access import Access, new_visitor_token
from .context import Studio
from .fill_tab import FillTab
from .runs_tab import RunsTab
from .text import quiet_component_refusals
from .train_tab import TrainTab

VISITOR_KEY = "mlm-studio-visitor"  # where the browser keeps its visitor secret


def header(access: Access) -> str:
    """Which device serves, whether the hub is reachable, and who may do what."""
    hub = "🌐 Hugging Face hub reachable" if is_online() else \
        "📴 Hub not reachable: the built-in corpus and starter model are in use"
    return (f"# MLM Studio\nFine-tune a language model on text you care about, then ask it to fill in words.  \n"
            f"**Device:** {describe_device()} · {hub}")


def build(studio: Studio, access: Access) -> gr.Blocks:
    """Lay out the app and wire its events."""
    online = is_online()
    models = [STARTER, DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL, "google-bert/bert-base-uncased",
              "FacebookAI/roberta-base"] if online else [STARTER]
    default_model = DEFAULT_MODEL if online else STARTER
    with gr.Blocks(title="MLM Studio") as demo:
        visitor = gr.BrowserState("", storage_key=VISITOR_KEY)
        gr.Markdown(header(access))
        with gr.Tabs():
            with gr.Tab("Train", id="train"):
                train = TrainTab(studio, access, visitor, models, default_model)
            fill = FillTab(studio, access)
            runs = RunsTab(studio, access, visitor)
        demo.load(_visitor_token, visitor, visitor, api_name=False)
        for tab in (train, fill, runs):
            tab.wire(demo)
    return demo


def _visitor_token(token):
    """The browser's visitor secret, made on its first visit."""
    return token if isinstance(token, str) and len(token) == 32 else new_visitor_token()


def main() -> None:
    """Start the app on this machine's runs folder."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    quiet_component_refusals()
    preload()
    studio = Studio.open(runs_root())
    access = Access()
    try:
        build(studio, access).queue(default_concurrency_limit=4).launch(
            server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), theme=gr.themes.Soft(), show_error=False,
            max_file_size=f"{MAX_UPLOAD_MB}mb")
    finally:
        studio.close()
