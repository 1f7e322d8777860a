"""The whole page: header, the three tabs, and the launch of the server."""

from __future__ import annotations

import asyncio
import os
import signal

import gradio as gr
from starlette.middleware import Middleware

from mlm_core.config import DEFAULT_CAUSAL_MODEL, DEFAULT_MODEL
from mlm_core.service.access import new_visitor_token
from mlm_core.service.hosting import (
    STARTER,
    RunsStorage,
    builtin_text,
    check_runs_folder,
    describe_hardware,
    forbid_local_paths,
    is_online,
    preload,
    settings,
    starter_summary,
)
from mlm_core.service.workspace import Budget, Workspace, runs_root

from . import refusals
from .access import Access
from .fill_tab import FillTab
from .form import first_values
from .quick_run import GuideEstimate, guide_config
from .runs_tab import RunsTab
from .text import refusal
from .train_tab import TrainTab
from .upload_quota import CACHE_SWEEP_S, UPLOADS_EXPIRE_S, UploadQuota

VISITOR_KEY = "mlm-studio-visitor"  # where the browser keeps its visitor secret
# Table headers wrap between words only ("perplexity" never splits into "perplexi" and "ty" at 390 px).
CSS = "th .header { word-break: normal !important; overflow-wrap: normal !important; }"


def header(access: Access, storage: RunsStorage) -> str:
    """Which device serves, whether the hub is reachable, where runs are kept, and who may do what."""
    hub = (
        "🌐 Hugging Face hub reachable"
        if is_online()
        else "📴 Hub not reachable: the built-in corpus and starter model are in use"
    )
    lines = [
        "# MLM Studio",
        "Fine-tune a language model on text you care about, then ask it to fill in words.  ",
        f"**Device:** {describe_hardware()} · {hub}  ",
        f"**Built-in text:** {builtin_text()}  ",
        f"**Built-in model (`{STARTER}`):** {starter_summary()}  ",
        f"**Runs:** {storage.describe(on_space=settings.current().on_space)}",
    ]
    if access.public:
        lines.append(
            f"\n🌍 **Public mode.** Everyone can watch every run and use every finished model; you can stop, "
            f"resume, delete, download or push only the runs you started. Limits: {access.limits.describe()}. "
            "Models and data come from the hub, the built-in ones, or your own upload."
        )
    return "\n".join(lines)


def build(studio: Workspace, access: Access, storage: RunsStorage) -> gr.Blocks:
    """Lay out the app and wire its events."""
    online = is_online()
    models = (
        [STARTER, DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL, "google-bert/bert-base-uncased", "FacebookAI/roberta-base"]
        if online
        else [STARTER]
    )
    guide = (
        GuideEstimate(guide_config(studio.root), access.limits.budget if access.public else Budget())
        if online
        else None
    )
    expiry = (CACHE_SWEEP_S, UPLOADS_EXPIRE_S) if access.public else None  # uploads and downloads expire
    with gr.Blocks(title="MLM Studio", delete_cache=expiry) as demo:
        visitor = gr.BrowserState("", storage_key=VISITOR_KEY)
        gr.Markdown(header(access, storage))
        if settings.current().oauth_client_id:  # a Space with `hf_oauth: true` in its README
            with gr.Row():
                gr.LoginButton(scale=0, elem_id="sign-in")
                gr.Markdown(
                    "Sign in with Hugging Face and your runs follow you to any browser; the Space's owner "
                    "(and the accounts in MLM_STUDIO_ADMINS) get the owner's rights."
                )
        if access.public:
            owner_panel(access, visitor)
        with gr.Tabs() as tabs:
            with gr.Tab("Train", id="train"):
                train = TrainTab(studio, access, visitor, models, first_values(online), guide)
            fill = FillTab(studio, access)
            runs = RunsTab(studio, access, visitor, watched=(tabs, train.board_view.run_name))
        demo.load(_visitor_token, visitor, visitor, api_name=False)
        for tab in (train, fill, runs):
            tab.wire(demo)
    return demo


def owner_panel(access: Access, visitor: gr.BrowserState) -> None:
    """Where the Space's owner unlocks the owner's rights with a password (or signs in above) to act on any run; a
    wrong password gets a `refusal` toast."""
    with gr.Accordion("Owner", open=False):
        password = gr.Textbox(
            label="Owner's password",
            type="password",
            max_length=200,
            info="Set by MLM_STUDIO_ADMIN_PASSWORD; unlocks the owner's rights in this browser.",
        )
        unlock = gr.Button("Unlock")

    def unlocked(visitor, password, request: gr.Request):
        """Give this browser the owner's rights; gr.Error (a `refusal`) for a wrong password or too many tries."""
        try:
            access.unlock(access.visitor(visitor, request), password)
        except ValueError as error:
            raise refusal(error) from None
        gr.Info("Unlocked: this browser has the owner's rights until the app restarts.")
        return ""

    unlock.click(unlocked, [visitor, password], password, api_name="unlock")


def _visitor_token(token):
    """The browser's visitor secret, made on its first visit."""
    return token if isinstance(token, str) and len(token) == 32 else new_visitor_token()


async def launched(studio: Workspace, access: Access, storage: RunsStorage, **launch: object) -> None:
    """Build the page and serve it until the server stops, inside a running event loop: outside one, Gradio makes a
    new loop for each lock and event it creates and drops the one before, whose collection logs "Exception ignored in
    BaseEventLoop.__del__ ... Invalid file descriptor: -1" tracebacks."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # asyncio.run's own handler waits for the blocked loop
    build(studio, access, storage).queue(default_concurrency_limit=4).launch(**launch)


def serve(server_token: str | None = None) -> None:
    """Start the app on this machine's runs folder (`server_token`: the owner's, withdrawn from a public Space);
    ValueError in plain words for a runs folder that cannot hold runs (`check_runs_folder`) or, in public mode, a
    setting in the environment that is not of its kind (see `Settings.from_env`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    refusals.install()
    root = runs_root()
    storage = check_runs_folder(root)
    access = Access.from_settings(server_token, root)
    if access.public:
        forbid_local_paths()  # names visitors type are hub ids, the built-in ones or runs, never files here
    preload()
    studio = Workspace.open(root, access.limits.retention if access.public else None)
    try:
        public = (
            dict(app_kwargs={"middleware": [Middleware(UploadQuota, address_of=access.address_key)]})
            if access.public
            else {}
        )
        asyncio.run(
            launched(
                studio,
                access,
                storage,
                server_name=settings.current().server_name,
                theme=gr.themes.Soft(),
                css=CSS,
                show_error=False,
                max_file_size=f"{settings.current().max_upload_mb}mb",
                **public,
            )
        )
    finally:
        studio.close()
