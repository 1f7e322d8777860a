"""Everyday English that installs offline: the starter's pre-training prose beside the Python docstrings.

Read from Debian packages (`apt-get install dict-gcide bible-kjv fortunes`), each free to redistribute:
- `dict-gcide`: GNU Collaborative International Dictionary of English (Webster's 1913 and additions), GPL-2+;
  definitions and their quotations, one record per entry.
- `bible-kjv` (`bible-kjv-text`): the King James Bible, GPL-2+ as packaged (the text itself is public domain);
  one record per chapter.
- `fortunes`: the BSD fortune cookie files (quotations, jokes, definitions), BSD licence; one record per cookie.
Left out: `dict-devil` (Bierce's Devil's Dictionary), whose 1911 entries include racial slurs a starter should not
learn to propose; the offensive fortunes are a separate package and never read.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

GCIDE_FILE = Path("/usr/share/dictd/gcide.dict.dz")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
BIBLE_RANGE = "Gen1:1-Rev22:21"
PACKAGES = {"gcide": "dict-gcide", "bible": "bible-kjv", "fortunes": "fortunes"}
EVERYDAY_SAMPLE = Path(__file__).with_name("everyday_sample.txt")  # a page of today's prose, to measure word coverage
LICENCES = {"gcide": "GPL-2.0-or-later", "bible": "GPL-2.0-or-later (public-domain text)", "fortunes": "BSD"}
# Fortune files of code, ASCII art or non-English text, which teach no everyday English.
_SKIPPED_FORTUNES = {"ascii-art", "perl", "linux", "linuxcookie", "debian", "computers", "goedel", "paradoxum"}
_MIN_CHARS = 40


def everyday_records() -> list[dict[str, str]]:
    """All records of the three sources, in a fixed order: `{"source": "gcide"|"bible"|"fortunes", "text": ...}`.
    ValueError naming the Debian package to install when a source is missing."""
    return list(gcide_records()) + list(bible_records()) + list(fortune_records())


def gcide_records(path: Path = GCIDE_FILE) -> Iterator[dict[str, str]]:
    """One record per dictionary entry: headword and definitions as prose, pronunciation marks and source tags
    (`[1913 Webster]`) removed. ValueError when dict-gcide is not installed."""
    _require(path.is_file(), "gcide")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as file:
        entry: list[str] = []
        for line in file:
            if line.strip() == "" and entry:
                text = _gcide_prose(entry)
                if len(text) >= _MIN_CHARS:
                    yield {"source": "gcide", "text": text}
                entry = []
            elif line.strip():
                entry.append(line.rstrip("\n"))


def _gcide_prose(lines: list[str]) -> str:
    """An entry's lines as one paragraph: `Word \\Pro*nun"ci*a`tion\\, n. [L. ...]` becomes `Word, n.`,
    `{Un*kind"ly}` becomes `Unkindly`."""
    text = " ".join(line.strip() for line in lines if not re.fullmatch(r"\s*\[[^\]]*\]\s*", line))
    text = re.sub(r"\s*\\[^\\]*\\", "", text)
    text = re.sub(r"\s*\[[^\]]*\]", "", text)  # etymologies and source tags
    text = re.sub(r"\{([^}]*)\}", lambda m: re.sub(r"[*\"`]", "", m.group(1)), text)  # cross-references
    return re.sub(r"\s+", " ", text).strip()


def bible_records() -> Iterator[dict[str, str]]:
    """One record per chapter of the King James Bible, verse numbers removed. ValueError when the `bible` program
    (package bible-kjv) is not installed."""
    program = shutil.which("bible")
    _require(program is not None, "bible")
    output = subprocess.run([program, "-l0", BIBLE_RANGE], capture_output=True, text=True, check=True).stdout
    verses: list[str] = []
    for line in output.splitlines():
        verse = re.match(r"\s*\d+ (.*)", line)
        if verse:
            verses.append(verse.group(1).strip())
        elif verses:  # a chapter heading ("Genesis 2") ends the chapter before it
            yield {"source": "bible", "text": " ".join(verses)}
            verses = []
    if verses:
        yield {"source": "bible", "text": " ".join(verses)}


def fortune_records(folder: Path = FORTUNES_DIR) -> Iterator[dict[str, str]]:
    """One record per fortune cookie (files of code, art or other languages skipped), line breaks kept.
    ValueError when fortunes is not installed."""
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.suffix and p.name not in _SKIPPED_FORTUNES)
    _require(bool(files), "fortunes")
    for path in files:
        for cookie in re.split(r"^%\s*$", path.read_text(encoding="utf-8", errors="replace"), flags=re.M):
            text = cookie.strip("\n")
            if len(text.strip()) >= _MIN_CHARS:
                yield {"source": "fortunes", "text": text}


def _require(present: bool, source: str) -> None:
    if not present:
        raise ValueError(
            f"corpus: {source!r} needs the Debian package {PACKAGES[source]} "
            f"(apt-get install {' '.join(PACKAGES.values())})"
        )
