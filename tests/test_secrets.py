"""A hub token never leaks, and model folders load from safetensors only, never from pickle."""

from __future__ import annotations

import io
import pickle
import urllib.request
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from mlm_core.models.inference import fill_mask

from .app_client import ended, start, wait_for
from .conftest import PLANTED_TOKEN

TYPED_TOKEN = "hf_TypedIntoThePasswordField987654321"


@pytest.mark.slow
def test_planted_tokens_appear_in_no_output(app_server, tmp_path):
    client = Client(app_server["url"], verbose=False)
    run = start(client, max_steps=3)
    assert wait_for(client, run, ended, timeout=180)["status"] == "completed"
    seen = []
    for token in (TYPED_TOKEN, ""):  # typed into the field, or taken from HF_TOKEN in the app's environment
        with pytest.raises(AppError) as refused:
            client.predict(
                visitor="", run_name=run, repo_id="someone/model", token=token, private=True, api_name="/push"
            )
        seen.append(str(refused.value))
    archive = client.predict(visitor="", run_name=run, api_name="/export_zip")
    with zipfile.ZipFile(archive) as zipped:
        seen += [zipped.read(name).decode("utf-8", "replace") for name in zipped.namelist()]
    for path in ("", "config", "gradio_api/info"):
        with urllib.request.urlopen(app_server["url"] + path, timeout=10) as page:
            seen.append(page.read().decode("utf-8", "replace"))
    seen.append(app_server["log"].read_text(encoding="utf-8", errors="replace"))
    seen += [p.read_bytes().decode("utf-8", "replace") for p in app_server["runs"].rglob("*") if p.is_file()]
    leaks = [text[:200] for text in seen if PLANTED_TOKEN in text or TYPED_TOKEN in text]
    assert not leaks, leaks
    assert len(seen) > 10


class _Payload:
    """Unpickling this runs code: what a malicious pytorch_model.bin would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_model_folder_with_only_pickled_weights_is_refused_unopened(tiny_mlm, tmp_path):
    folder, marker = tmp_path / "pickled", tmp_path / "unpickled-was-run"
    folder.mkdir()
    for file in tiny_mlm.iterdir():
        if file.suffix != ".safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    buffer = io.BytesIO()
    pickle.dump(_Payload(marker), buffer)
    (folder / "pytorch_model.bin").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="safetensors"):
        fill_mask(str(folder), "The <mask> statement.")
    assert not marker.exists()
