"""The built-in corpus: English prose that ships with every CPython, no download needed."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import re
import sysconfig
from pathlib import Path

# Folders of the standard library that hold tests, tools or vendored code rather than documented API.
_SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "pydoc_data", "turtledemo",
                 "ensurepip", "__pycache__"}
_MIN_DOCSTRING_CHARS = 40
# Installed runtime requirements (requirements.txt) whose docstrings extend the starter's pre-training text; their
# pinned versions fix that text (numpy is pinned to a range, so its installed version is recorded in the model card).
# Left out: plotly, whose docstrings are generated (thousands of near-identical property descriptions), and torch and
# transformers, 10 million characters about tensors and model internals: a starter pre-trained with them (measured)
# guessed "shape" or "axis" in plain Python sentences and was 4 points less accurate on the language reference.
LIBRARY_PACKAGES = ("numpy", "huggingface_hub", "datasets", "gradio", "accelerate", "tqdm", "tokenizers",
                    "safetensors")
_LIBRARY_SKIPPED_DIRS = {"test", "tests", "testing", "pydoc_data", "__pycache__"}


@functools.lru_cache(maxsize=1)
def reference_records() -> tuple[dict[str, str], ...]:
    """The Python language reference (`pydoc_data.topics`), one record per topic: the fine-tuning corpus."""
    from pydoc_data.topics import topics

    return tuple({"topic": name, "text": topics[name]} for name in sorted(topics))


@functools.lru_cache(maxsize=1)
def docstring_records() -> tuple[dict[str, str], ...]:
    """Docstrings of the standard library, read with `ast`: the starter model's pre-training corpus."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return tuple(_tree_docstrings(root, root, _SKIPPED_DIRS, set()))


def _tree_docstrings(files: Path, names_root: Path, skipped: set[str], seen: set[str]) -> list[dict[str, str]]:
    """Records of the docstrings in the `.py` files under `files` not yet `seen`, named as modules from
    `names_root`; folders named in `skipped` are left out."""
    records = []
    for path in sorted(files.rglob("*.py")):
        relative = path.relative_to(names_root)
        if skipped & set(relative.parts):
            continue
        module = ".".join(relative.with_suffix("").parts)
        for name, doc in _docstrings(path):
            if len(doc) >= _MIN_DOCSTRING_CHARS and doc not in seen:
                seen.add(doc)
                records.append({"source": f"{module}.{name}" if name else module, "text": doc})
    return records


def _docstrings(path: Path) -> list[tuple[str, str]]:
    """(qualified name, docstring) of a module and the classes and functions in it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                found.append((getattr(node, "name", ""), doc))
    return found


def library_docstring_records(packages: tuple[str, ...] = LIBRARY_PACKAGES) -> tuple[dict[str, str], ...]:
    """Docstrings of installed libraries, read with `ast` from their `.py` files (nothing is imported); ValueError
    naming the first package that is not installed."""
    records, seen = [], set()
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"package: {package!r} is not installed; install requirements.txt first")
        root = Path(list(spec.submodule_search_locations)[0])
        records += _tree_docstrings(root, root.parent, _LIBRARY_SKIPPED_DIRS, seen)
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
        if len(text) >= _MIN_DOCSTRING_CHARS:
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


def builtin_records(name: str) -> tuple[dict[str, str], ...]:
    """Records of a built-in dataset by name ('builtin' or 'builtin-docstrings')."""
    return docstring_records() if name == "builtin-docstrings" else reference_records()
