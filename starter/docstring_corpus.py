"""The starter's pre-training docstrings: the standard library's and those of the runtime requirements, read with
`ast` from their `.py` files (nothing is imported), a paragraph repeated with only names or code changed kept once."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
from pathlib import Path

from mlm_core.data.builtin_corpus import MIN_DOCSTRING_CHARS, docstring_records, tree_docstrings

# Installed runtime requirements (requirements.txt) whose docstrings extend the starter's pre-training text; their
# pinned versions fix that text (numpy is pinned to a range, so its installed version is recorded in the model card).
# Left out: plotly, whose docstrings are generated (thousands of near-identical property descriptions), and torch and
# transformers, 10 million characters about tensors and model internals: a starter pre-trained with them (measured)
# guessed "shape" or "axis" in plain Python sentences and was 4 points less accurate on the language reference.
LIBRARY_PACKAGES = ("numpy", "huggingface_hub", "datasets", "gradio", "accelerate", "tqdm", "tokenizers", "safetensors")
_LIBRARY_SKIPPED_DIRS = {"test", "tests", "testing", "pydoc_data", "__pycache__"}


def library_docstring_records(packages: tuple[str, ...] = LIBRARY_PACKAGES) -> tuple[dict[str, str], ...]:
    """Docstrings of installed libraries, read with `ast` from their `.py` files (nothing is imported); ValueError
    naming the first package that is not installed."""
    records, seen = [], set()
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"package: {package!r} is not installed; install requirements.txt first")
        root = Path(list(spec.submodule_search_locations)[0])
        records += tree_docstrings(root, root.parent, _LIBRARY_SKIPPED_DIRS, seen)
    return tuple(records)


def library_versions(packages: tuple[str, ...] = LIBRARY_PACKAGES) -> dict[str, str]:
    """Installed version of each library whose docstrings the starter reads; PackageNotFoundError for one that is
    not installed."""
    return {package: importlib.metadata.version(package) for package in packages}


@functools.lru_cache(maxsize=1)
def pretraining_records() -> tuple[dict[str, str], ...]:
    """The starter's pre-training text: standard library and library docstrings, repeated paragraphs removed.

    Libraries repeat paragraphs with only a name changed (transformers documents the same arguments for hundreds
    of models), so a paragraph is kept only the first time its text, with code spans and identifiers blanked out,
    is seen. Never includes the language reference, the built-in fine-tuning text. ValueError when one of
    LIBRARY_PACKAGES is not installed.
    """
    records, seen = [], set()
    for record in docstring_records() + library_docstring_records():
        kept = []
        for paragraph in _paragraphs(record["text"]):
            key = _near_duplicate_key(paragraph)
            if key not in seen:
                seen.add(key)
                kept.append(paragraph)
        text = "\n\n".join(kept)
        if len(text) >= MIN_DOCSTRING_CHARS:
            records.append({"source": record["source"], "text": text})
    return tuple(records)


def _paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs of a docstring, indentation kept."""
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _near_duplicate_key(paragraph: str) -> str:
    """A paragraph with code spans, identifiers (CamelCase, snake_case, digits) and spacing normalised, lowercased."""
    text = re.sub(r"`[^`]*`", "C", paragraph)
    text = re.sub(r"\b\w*(?:[a-z][A-Z]|[A-Z]{2}|_|\d)\w*\b", "I", text)
    return re.sub(r"\s+", " ", text).strip().lower()
