"""The built-in starter model's own files beyond the model: its Fill-mask examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlm_core.runs.model_sources import STARTER_DIR

EXAMPLES_FILE = "examples.json"  # the Fill-mask examples: the default run's probes, with their ranks before and after


def default_examples(folder: Path = STARTER_DIR) -> list[dict[str, Any]]:
    """The starter's Fill-mask examples (text, answer, ranks before and after the default run); [] if not built."""
    path = folder / EXAMPLES_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
