"""Data preparation at scale: ours against the guides' recipe on generated 10, 40 and 160 MB text files; and
`--encoders`, our preparation with each of its tokenizing paths.

Each contender runs in its own process (`python -m bench.data_scale CONTENDER FILE`), which times load ->
tokenize -> group -> split and reports its own peak resident memory (VmHWM: exact for the process, unlike a child's
ru_maxrss, which Linux seeds with the parent's). Ours also reports its tokenizer workers' peaks; its memory figure is
main + workers, an upper bound of what the job held at once.

`python -m bench.data_scale --encoders [--sizes 2 32 160] [--out FILE]`: the same pipeline (`prepare_data`) with the
tokenizer worker processes ("pool", forced at every size) against tokenizing in the one process with the tokenizers
library's own threads ("threads"), whole-word masking off and on, interleaved A-B-B-A; each run is appended to FILE
(the last two of each list of sizes are kept), from which `bench.report` renders the page's section.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from mlm_core.system.process_memory import peak_rss

BLOCK_SIZE = 128
SIZES = {"full": (10, 40, 160), "quick": (2, 8, 32), "test": (0.25, 1)}  # MB of text
WHOLE_WORD_SIZES = {"full": (40, 160), "quick": (32,), "test": (1,)}
REPEATS = {"full": 2, "quick": 1, "test": 1}  # measurements per contender and size
ENCODERS = ("pool", "threads")  # our preparation's tokenizing paths (see `child`)
ENCODER_SIZES = {"full": (2, 32, 160), "quick": (2, 32), "test": (0.25,)}  # MB of text


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """A .txt file of `megabytes` MiB: the built-in corpora's paragraphs, reshuffled on each pass; its size in
    bytes."""
    from mlm_core.data.builtin_corpus import docstring_records, reference_records  # lazy: see `child`

    paragraphs = [
        p.strip()
        for r in (*reference_records(), *docstring_records())
        for p in r["text"].replace("\r\n", "\n").split("\n\n")
        if p.strip()
    ]
    rng, target, written = random.Random(seed), int(megabytes * 2**20), 0
    with path.open("wb") as out:
        while written < target:
            rng.shuffle(paragraphs)
            for p in paragraphs:
                written += out.write(p.encode("utf-8") + b"\n\n")
                if written >= target:
                    break
    return path.stat().st_size


def measure(contender: str, path: Path, whole_word: bool = False, timeout: float = 3600) -> dict:
    """Seconds and peak memory (bytes) of one contender preparing one file, in a fresh process; RuntimeError with
    the end of its stderr when it fails, subprocess.TimeoutExpired after `timeout` seconds."""
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}  # both may use every core
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "bench.data_scale", contender, str(path)]
    machine, own = psutil.cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command + (["--whole-word"] if whole_word else []), capture_output=True, text=True, env=env, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{contender} on {path.name} failed: {done.stderr[-800:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_total_bytes"] = result["peak_main_bytes"] + sum(result["peak_worker_bytes"])
    result["others_share"] = _others_share(machine, own, time.perf_counter() - started)
    return result


def _others_share(machine_before, own_before, seconds: float) -> float:
    """The share of the machine's CPU time (all cores) that other programs used while a contender ran: 0 on an idle
    machine; 0.5 on 2 cores means about one core was taken."""
    machine, own = psutil.cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = (sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)) - (
        sum(machine_before) - machine_before.idle - getattr(machine_before, "iowait", 0.0)
    )
    ours = (own.ru_utime + own.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
    return max(0.0, busy - ours) / (seconds * (psutil.cpu_count() or 1))


def compare(mode: str, work: Path, say=print) -> dict:
    """Both contenders at every size, `REPEATS` times each in A-B-B-A order (the best time counts, the highest
    memory), then ours with whole-word masking once; RuntimeError when a contender's process fails."""
    rows, whole_word = [], []
    for i, megabytes in enumerate(SIZES[mode]):
        path = work / f"corpus-{megabytes}mb.txt"
        size = write_corpus(path, megabytes)
        first, second = ("guide", "ours")[:: 1 if i % 2 == 0 else -1]
        order = [first, second, second, first][: 2 * REPEATS[mode]]
        runs: dict[str, list[dict]] = {first: [], second: []}
        for contender in order:
            runs[contender].append(measure(contender, path))
            say(f"data scale: {contender}, {megabytes} MB: {_summary(runs[contender][-1])}")
        row = {"megabytes": megabytes, "bytes": size, "guide": _best(runs["guide"]), "ours": _best(runs["ours"])}
        row["speedup"] = row["guide"]["seconds"] / row["ours"]["seconds"]
        row["memory_ratio"] = row["ours"]["peak_total_bytes"] / row["guide"]["peak_total_bytes"]
        if megabytes in WHOLE_WORD_SIZES[mode]:
            whole_word.append(
                {
                    "megabytes": megabytes,
                    "ours": measure("ours", path, whole_word=True),
                    "guide_peak_bytes": row["guide"]["peak_total_bytes"],
                }
            )
            say(f"data scale: ours with whole-word masking, {megabytes} MB: {_summary(whole_word[-1]['ours'])}")
        rows.append(row)
        path.unlink()
    largest, previous = rows[-1], rows[-2]
    return {
        "block_size": BLOCK_SIZE,
        "tokenizer": "starter",
        "repeats": REPEATS[mode],
        "rows": rows,
        "whole_word": whole_word,
        "ratios": {
            "scale_speedup_min": min(r["speedup"] for r in rows),
            "scale_growth": largest["ours"]["seconds"] / previous["ours"]["seconds"],
            "scale_memory_ratio": largest["memory_ratio"],
            "scale_memory_ratio_wwm": (whole_word[-1]["ours"]["peak_total_bytes"] / whole_word[-1]["guide_peak_bytes"]),
        },
    }


def compare_encoders(sizes, work: Path, say=print) -> dict:
    """Our preparation with the worker pool and with the library's threads, at each size in MB, whole-word masking
    off and on: each contender twice in A-B-B-A order (which one starts alternates), the best time and the highest
    peak of each; ratios are threads / pool within this run. RuntimeError when a contender's process fails."""
    rows, turn, started = [], 0, time.strftime("%Y-%m-%d %H:%M")
    for megabytes in sizes:
        path = work / f"corpus-{megabytes}mb.txt"
        size = write_corpus(path, megabytes)
        for whole_word in (False, True):
            first, second = ENCODERS[:: 1 if turn % 2 == 0 else -1]
            turn += 1
            runs: dict[str, list[dict]] = {first: [], second: []}
            for contender in (first, second, second, first):
                runs[contender].append(measure(contender, path, whole_word=whole_word))
                say(f"encoders: {contender}, {megabytes} MB, whole-word {whole_word}: {_summary(runs[contender][-1])}")
            row = {
                "megabytes": megabytes,
                "bytes": size,
                "whole_word": whole_word,
                "first": first,
                **{name: _best(runs[name]) for name in ENCODERS},
            }
            if row["pool"]["blocks"] != row["threads"]["blocks"]:
                raise RuntimeError(
                    f"the encoders made different blocks at {megabytes} MB: "
                    f"{row['pool']['blocks']} vs {row['threads']['blocks']}"
                )
            row["time_ratio"] = row["threads"]["seconds"] / row["pool"]["seconds"]
            row["memory_ratio"] = row["threads"]["peak_total_bytes"] / row["pool"]["peak_total_bytes"]
            rows.append(row)
        path.unlink()
    return {
        "block_size": BLOCK_SIZE,
        "tokenizer": "starter",
        "cores": len(os.sched_getaffinity(0)),
        "date": started,
        "rows": rows,
    }


def record_encoders(result: dict, path: Path, keep: int = 2) -> dict:
    """`result` added to the runs kept in `path` (the last `keep` of each list of sizes); what was written."""
    from mlm_core.system.atomic_files import read_json, write_json

    old = read_json(path) if path.exists() else None
    old = old if isinstance(old, dict) else {}
    runs = [*old.get("runs", []), result]
    sizes = [tuple(r["megabytes"] for r in run["rows"]) for run in runs]
    runs = [run for i, run in enumerate(runs) if sizes[i + 1 :].count(sizes[i]) < keep]
    study = {**old, "study": "data_encoders", "runs": runs}
    write_json(path, study)
    return study


def _best(runs: list[dict]) -> dict:
    """Several measurements as one: the shortest times (the least disturbed by other work), the highest peaks."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["cpu_seconds"] = min(r["cpu_seconds"] for r in runs)
    for key in ("peak_main_bytes", "peak_total_bytes"):
        best[key] = max(r[key] for r in runs)
    best["all_seconds"] = [r["seconds"] for r in runs]
    if all("others_share" in r for r in runs):
        best["others_share"] = max(r["others_share"] for r in runs)
    return best


def _summary(result: dict) -> str:
    """Seconds and peak memory of one measurement, for the progress lines."""
    return (
        f"{result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s of CPU), "
        f"{result['peak_total_bytes'] / 2**30:.2f} GiB"
    )


class ChildPeaks:
    """Watches this process's children while it is entered: the most memory they held of their own (USS) at once.

    `datasets.map(num_proc=...)` forks its workers: their resident sets count every page they share with this
    process, so summing those would count this process's memory once per worker. Only unique pages are theirs.
    """

    def __init__(self, every_s: float = 0.5):  # reading smaps costs CPU that the contender would miss
        self.every_s, self.peak, self._done = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._done.wait(self.every_s):
            together = 0
            for kid in me.children(recursive=True):
                try:
                    together += kid.memory_full_info().uss
                except psutil.Error:  # it ended meanwhile
                    continue
            self.peak = max(self.peak, together)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def peaks(self) -> list[int]:
        """[the children's largest sampled sum of unique bytes], or [] when none was seen."""
        return [self.peak] if self.peak else []


def child(contender: str, path: str, whole_word: bool) -> dict:
    """One contender's preparation of `path`, timed from loading to split; its own figures (seconds, bytes).
    ValueError in plain words when our preparation refuses the file."""
    # Imports happen here, in the contender's own process, so that its peak memory counts only what it uses.
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    from transformers import AutoTokenizer

    from mlm_core.runs.model_sources import STARTER_DIR

    tokenizer = AutoTokenizer.from_pretrained(STARTER_DIR)
    before = peak_rss()  # imports and tokenizer: what preparation starts from
    cpu_before = sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if contender == "guide":
            from datasets import disable_progress_bars

            from bench.guide_recipe import prepare_text_file

            disable_progress_bars()
            with ChildPeaks() as pool:  # the `num_proc` processes of `datasets.map`
                split = prepare_text_file(path, tokenizer, BLOCK_SIZE, cache_dir=tmp)
            seconds = time.perf_counter() - started
            blocks, workers = len(split["train"]) + len(split["test"]), pool.peaks()
        else:
            from mlm_core.config import TrainConfig
            from mlm_core.data import store_builder, tokenizing
            from mlm_core.data.lm_data import prepare_data

            config = TrainConfig(
                model="starter",
                dataset="file",
                dataset_file=path,
                slice="train",
                whole_word_masking=whole_word,
                output_dir=tmp,
            )
            processes = None  # "ours": whatever the preparation picks
            if contender == "pool":  # the worker processes at any size
                store_builder.WORKER_MIN_BYTES = 0
            elif contender == "threads":  # this process, the library's threads (TOKENIZERS_PARALLELISM unset)
                processes = 1
            data = prepare_data(config, tokenizer, BLOCK_SIZE, processes=processes)
            seconds = time.perf_counter() - started
            blocks, workers = len(data.train) + len(data.eval), list(tokenizing.last_worker_peaks)
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return {
        "seconds": seconds,
        "cpu_seconds": sum(u.ru_utime + u.ru_stime for u in used) - cpu_before,
        "blocks": blocks,
        "peak_main_bytes": peak_rss(),
        "peak_worker_bytes": workers,
        "before_bytes": before,
    }


def main(argv: list[str]) -> int:
    """`--encoders`: the encoders' comparison, printed and appended to `--out`; else one contender's child run."""
    if argv[:1] != ["--encoders"]:
        print(json.dumps(child(argv[0], argv[1], "--whole-word" in argv)))
        return 0
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.data_scale --encoders")
    parser.add_argument("--sizes", type=float, nargs="+", default=ENCODER_SIZES["full"], help="MB of text")
    parser.add_argument("--out", type=Path, help="JSON file the run is appended to")
    args = parser.parse_args(argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        result = compare_encoders(
            [int(s) if s == int(s) else s for s in args.sizes],
            Path(tmp),
            say=lambda what: print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True),
        )
    if args.out is not None:
        record_encoders(result, args.out)
    from bench import report

    print(report.encoders_table([result]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
