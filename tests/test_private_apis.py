"""The two places where we change a library's internals, because it offers no public way: each test fails when the
internal we rely on changes, instead of the patch silently doing nothing after an upgrade."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path


def test_gradio_queueing_still_reports_errors_through_the_names_refusals_wraps():
    import gradio.queueing as queueing

    from studio import refusals

    source = inspect.getsource(queueing)
    assert "traceback.print_exc()" in source, "refusals wraps gradio.queueing's traceback.print_exc"
    assert "error_payload(" in source and callable(queueing.error_payload)
    refusals.install()
    refusals.install()  # idempotent
    assert isinstance(queueing.traceback, refusals._QuietTraceback)
    assert queueing.error_payload.__qualname__.startswith("_plain_payload")


TRACKIO_OFFLINE = """
import sys
from pathlib import Path
import huggingface_hub
import huggingface_hub.constants
from huggingface_hub.errors import OfflineModeIsEnabled
from mlm_core.training.trackers import _offline_trackio

huggingface_hub.constants.HF_HUB_OFFLINE = False  # online, as on a Space
assert not huggingface_hub.is_offline_mode()
with _offline_trackio(Path(sys.argv[1])):
    assert huggingface_hub.is_offline_mode(), "is_offline_mode no longer reads constants.HF_HUB_OFFLINE"
    try:
        huggingface_hub.whoami(token="hf_not_a_real_token")
        raise AssertionError("whoami reached for the hub")
    except OfflineModeIsEnabled:
        pass
assert not huggingface_hub.is_offline_mode()
print("ok")
"""


def test_trackio_starts_with_the_hub_offline_through_its_constant(tmp_path):
    # In a process of its own: trackio reads its folder once, at import.
    done = subprocess.run(
        [sys.executable, "-c", TRACKIO_OFFLINE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
