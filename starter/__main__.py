"""Pre-train the built-in starter model from scratch, then run the default run on it: its probes become the app's
Fill-mask examples and its figures the model card."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from mlm_core.cli.progress_bar import ProgressPrinter
from mlm_core.runs.model_sources import STARTER_DIR
from starter.recipe import build_starter

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m starter`."""
    parser = argparse.ArgumentParser(prog="python -m starter", description=__doc__)
    parser.add_argument("--output", type=Path, help="folder to write it to (default: assets/starter-mlm)")
    parser.add_argument("--epochs", type=int, help="passes over the corpus (default: the committed recipe's)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep the corpus, tokenizer and pre-training run here and "
        "resume it from its newest checkpoint (default: a temp folder)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build the starter and print what it and the default run on it measure; bad input is one line on stderr and
    exit code 2, any other error one line and exit code 1 (with MLM_STUDIO_DEBUG=1, its traceback)."""
    if not os.environ.get("MLM_STUDIO_DEBUG"):
        warnings.simplefilter("ignore")
    args = build_parser().parse_args(argv)
    out = args.output or STARTER_DIR
    try:
        with ProgressPrinter() as printer:
            figures = build_starter(out, epochs=args.epochs, on_event=printer, work_dir=args.work_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # the user gets one line; MLM_STUDIO_DEBUG=1 shows the traceback
        if os.environ.get("MLM_STUDIO_DEBUG"):
            raise
        print(f"error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1
    run = figures["default_run"]
    print(
        f"starter model in {out}: perplexity {figures['pretraining_perplexity']:.2f} on held-out pre-training "
        f"text, {figures['everyday_whole_share']:.0%} of everyday words one token; the default run takes the "
        f"language reference from {run['base_perplexity']:.2f} to "
        f"{run['final_perplexity']:.2f}, top-5 accuracy {run['base_top5']:.1%} to {run['final_top5']:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
