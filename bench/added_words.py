"""What adding your words changes: the same run on a text with and without `add_words`, word accuracy and
perplexity of each on its held-out text, for an English text and its French translation.

    python -m bench.added_words [--model starter] [--words 150] [--steps 150] [--seeds 0 1] [--texts en fr]

The texts are the Debian Edu manual (a school network's handbook) in English and in French, from the Debian packages
`debian-edu-doc-en` and `debian-edu-doc-fr`: the same content in two languages, which the starter never read in
pre-training. Writes docs/bench/added_words.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.system.atomic_files import write_json
from mlm_core.training.loop import train

MANUAL = "/usr/share/doc/debian-edu-doc-{language}/debian-edu-bookworm-manual.html"
MIN_WORDS = 5  # a paragraph shorter than this is a heading or a label, not text


class _Paragraphs(HTMLParser):
    """The text of an HTML page's paragraphs and list items, white space collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[str] = []
        self._depth, self._text = 0, []

    def handle_starttag(self, tag, attrs) -> None:
        self._depth += tag in ("p", "li")

    def handle_endtag(self, tag) -> None:
        if tag in ("p", "li") and self._depth:
            self._depth -= 1
            if not self._depth:
                text, self._text = " ".join("".join(self._text).split()), []
                if len(text.split()) >= MIN_WORDS:
                    self.paragraphs.append(text)

    def handle_data(self, data) -> None:
        if self._depth:
            self._text.append(data)


def manual_paragraphs(language: str) -> list[str]:
    """The paragraphs of the Debian Edu manual in `language` ('en', 'fr'...); OSError naming the package when it is
    not installed."""
    path = Path(MANUAL.format(language=language))
    if not path.is_file():
        raise OSError(f"{path} is missing: install the Debian package debian-edu-doc-{language}")
    parser = _Paragraphs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.paragraphs


def compare(model: str, words: int, steps: int, seed: int, upload: Path, folder: Path) -> dict:
    """Final word accuracy (top-1, top-5) and perplexity of one run without and one with `add_words` on `upload`."""
    figures = {}
    for added in (0, words):
        config = TrainConfig(
            model=model,
            dataset="file",
            dataset_file=str(upload),
            block_size=128,
            batch_size=16,
            learning_rate=1e-3,
            max_steps=steps,
            whole_word_masking=True,
            add_words=added,
            seed=seed,
            output_dir=str(folder / f"run-{upload.stem}-{seed}-{added}"),
        )
        results = train(config)
        figures["with" if added else "without"] = {
            "added_words": len(results.added_words),
            "base_top5": results.base_top5,
            "final_top1": results.final_top1,
            "final_top5": results.final_top5,
            "base_perplexity": results.base_perplexity,
            "final_perplexity": results.final_perplexity,
            "eval_blocks": results.eval_blocks,
            "accuracy_counts": results.accuracy_counts,
        }
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starter")
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--texts", nargs="+", default=["en", "fr"], help="languages of the manual")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/added_words.json"))
    args = parser.parse_args(argv)
    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for language in args.texts:
            upload = Path(tmp) / f"manual-{language}.jsonl"
            paragraphs = manual_paragraphs(language)
            upload.write_text("\n".join(json.dumps({"text": p}) for p in paragraphs), encoding="utf-8")
            runs = {str(s): compare(args.model, args.words, args.steps, s, upload, Path(tmp)) for s in args.seeds}
            texts[language] = {"paragraphs": len(paragraphs), "characters": sum(map(len, paragraphs)), "runs": runs}
            for seed, figures in runs.items():
                without, added = figures["without"], figures["with"]
                print(
                    f"{language} seed {seed}: {added['added_words']} words added; word top-1 "
                    f"{without['final_top1']:.1%} -> {added['final_top1']:.1%}, top-5 {without['final_top5']:.1%} -> "
                    f"{added['final_top5']:.1%}"
                )
    write_json(args.out, {"model": args.model, "words": args.words, "steps": args.steps, "texts": texts})


if __name__ == "__main__":
    main()
