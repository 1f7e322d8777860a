"""How this app runs, read from its environment before anything else starts (no Gradio import here)."""

from __future__ import annotations

import os

from mlm_core.system import settings

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def public_mode() -> bool:
    """Public on a Space (every Space sets SPACE_ID) or with MLM_STUDIO_PUBLIC=1; MLM_STUDIO_PUBLIC=0 forces private."""
    return settings.current().is_public


def withdraw_server_token() -> str | None:
    """In public mode, take the owner's hub token out of the environment, so nothing a visitor triggers sends it.

    Call it before huggingface_hub is imported: it reads HF_HUB_DISABLE_IMPLICIT_TOKEN once, at import.
    """
    if not public_mode():
        return None
    token = next((os.environ[name] for name in TOKEN_VARIABLES if os.environ.get(name)), None)
    for name in TOKEN_VARIABLES:
        os.environ.pop(name, None)
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"  # nor a token file a `huggingface-cli login` left behind
    return token
