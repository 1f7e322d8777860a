"""Absolute paths out of text that leaves this machine (messages on a page, an exported model's files)."""

from __future__ import annotations

import re

# An absolute path (or one from the home folder) of two parts or more; a URL's "//" does not start one.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])[~]?/(?:[^\s'\"`()<>,;/]+/)+([^\s'\"`()<>,;/]*)")


def hide_paths(text: str) -> str:
    """The text with each absolute path replaced by its last part ('/srv/runs/x/model' becomes 'model')."""
    return _ABSOLUTE_PATH.sub(lambda match: match[1] or "…", text)
