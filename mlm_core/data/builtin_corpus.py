"""The built-in corpus: English prose that ships with every CPython, no download needed."""

from __future__ import annotations

import ast
import functools
import sysconfig
from pathlib import Path

# Folders of the standard library that hold tests, tools or vendored code rather than documented API.
_SKIPPED_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "pydoc_data",
    "turtledemo",
    "ensurepip",
    "__pycache__",
}
MIN_DOCSTRING_CHARS = 40


@functools.lru_cache(maxsize=1)
def reference_records() -> tuple[dict[str, str], ...]:
    """The Python language reference (`pydoc_data.topics`), one record per topic: the fine-tuning corpus."""
    from pydoc_data.topics import topics

    return tuple({"topic": name, "text": topics[name]} for name in sorted(topics))


@functools.lru_cache(maxsize=1)
def docstring_records() -> tuple[dict[str, str], ...]:
    """Docstrings of the standard library, read with `ast` (dataset 'builtin-docstrings')."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return tuple(tree_docstrings(root, root, _SKIPPED_DIRS, set()))


def tree_docstrings(files: Path, names_root: Path, skipped: set[str], seen: set[str]) -> list[dict[str, str]]:
    """Records of the docstrings in the `.py` files under `files` not yet `seen`, named as modules from
    `names_root`; folders named in `skipped` are left out."""
    records = []
    for path in sorted(files.rglob("*.py")):
        relative = path.relative_to(names_root)
        if skipped & set(relative.parts):
            continue
        module = ".".join(relative.with_suffix("").parts)
        for name, doc in _docstrings(path):
            if len(doc) >= MIN_DOCSTRING_CHARS and doc not in seen:
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


def builtin_records(name: str) -> tuple[dict[str, str], ...]:
    """Records of a built-in dataset by name ('builtin' or 'builtin-docstrings')."""
    return docstring_records() if name == "builtin-docstrings" else reference_records()
