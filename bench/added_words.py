"""What adding your words changes: the same run on everyday text with and without `add_words`, word accuracy and
perplexity of each on its held-out text.

    python -m bench.added_words [--model starter] [--words 300] [--steps 150] [--seeds 0 1]

Needs the Debian `fortunes` package (the everyday text: its sayings and quotations). Writes
docs/bench/added_words.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.system.atomic_files import write_json
from mlm_core.training.loop import train
from starter.everyday_corpus import fortune_records

RECORDS = 4000  # sayings of the fortunes package: about 600 KB of everyday English


def compare(model: str, words: int, steps: int, seed: int, folder: Path) -> dict:
    """Final word accuracy (top-1, top-5) and perplexity of one run without and one with `add_words`."""
    upload = folder / "fortunes.jsonl"
    if not upload.exists():
        records = [record for _, record in zip(range(RECORDS), fortune_records())]
        upload.write_text("\n".join(json.dumps(record) for record in records), encoding="utf-8")
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
            output_dir=str(folder / f"run-{seed}-{added}"),
        )
        results = train(config)
        figures["with" if added else "without"] = {
            "added_words": len(results.added_words),
            "base_top1": results.base_top1,
            "final_top1": results.final_top1,
            "final_top5": results.final_top5,
            "final_perplexity": results.final_perplexity,
            "eval_blocks": results.eval_blocks,
            "accuracy_counts": results.accuracy_counts,
        }
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starter")
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("docs/bench/added_words.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {str(seed): compare(args.model, args.words, args.steps, seed, Path(tmp)) for seed in args.seeds}
    result = {"model": args.model, "words": args.words, "steps": args.steps, "runs": runs}
    write_json(args.out, result)
    for seed, figures in runs.items():
        without, added = figures["without"], figures["with"]
        print(
            f"seed {seed}: {added['added_words']} words added; word top-1 {without['final_top1']:.1%} -> "
            f"{added['final_top1']:.1%}, top-5 {without['final_top5']:.1%} -> {added['final_top5']:.1%}"
        )


if __name__ == "__main__":
    main()
