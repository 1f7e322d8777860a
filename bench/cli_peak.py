"""Peak memory of a one-step CLI run on a large generated text file, whole-word masking or not.

`python -m bench.cli_peak [MEGABYTES]` runs `python -m mlm_core train --model starter --dataset-file ...
--max-steps 1` in a child process, twice (plain, then with `--whole-word-masking`), and prints one JSON line per run:
seconds and the CLI process's peak resident memory (its tokenizer workers hold about 50 MiB each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.data_scale import write_corpus

ROOT = Path(__file__).resolve().parents[1]


def one_step(corpus: Path, run_dir: Path, whole_word: bool) -> dict:
    """Seconds and peak memory (bytes) of one CLI run, measured from a fresh child process of its own;
    RuntimeError with the end of its stderr when the run fails."""
    probe = (
        "import runpy, sys; from mlm_core.system.process_memory import peak_rss\n"
        "sys.argv = ['mlm_core', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('mlm_core', run_name='__main__')\n"
        "finally:\n    print('peak_rss', peak_rss(), file=sys.stderr)"
    )
    command = [
        sys.executable,
        "-c",
        probe,
        "train",
        "--model",
        "starter",
        "--dataset-file",
        str(corpus),
        "--max-steps",
        "1",
        "--output-dir",
        str(run_dir),
    ] + (["--whole-word-masking"] if whole_word else [])
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {
        "whole_word": whole_word,
        "seconds": round(seconds, 1),
        "cli_peak_bytes": int(done.stderr.rsplit("peak_rss", 1)[1].split()[0]),
        "summary": done.stdout.strip(),
    }


def main(megabytes: float = 160) -> None:
    """Write the corpus (`megabytes` MiB), run the CLI on it twice, print the figures; RuntimeError when a run
    fails."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / f"corpus-{megabytes:g}mb.txt"
        write_corpus(corpus, megabytes)
        for whole_word in (False, True):
            result = one_step(corpus, Path(tmp) / f"run-{int(whole_word)}", whole_word)
            print(json.dumps({"megabytes": megabytes, **result}), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 160)
