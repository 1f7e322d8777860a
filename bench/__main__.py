"""Run every comparison once, print the table, write docs/bench/<device>.json and docs/PERFORMANCE.md.

`--quick` (about seven minutes on 2 CPU cores, the data-scale section included) prints the ratios as one JSON
line last. `--only data-scale` runs just that section and merges it into the device's existing figures.
`--only encoders` compares our data preparation's two tokenizing paths (2, 32 and 160 MB; `--quick`: 2 and 32) and
adds the run to docs/bench/data_encoders.json (the last two runs of each list of sizes are kept).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bench import (
    data_prep,
    data_scale,
    flops,
    host_overhead,
    latency,
    preview_memory,
    report,
    subjects,
    train_speed,
)
from mlm_core.models.loading import preload, quiet_transformers
from mlm_core.system.atomic_files import read_json, write_json

DOCS = Path(__file__).resolve().parents[1] / "docs"
# (training steps per round, DistilRoBERTa batch, rounds, fill-mask repeats, data-prep repeats)
SIZES = {"quick": (4, 8, 3, 20, 1), "full": (8, 16, 5, 50, 3)}
HOST_STEPS = {"quick": 30, "full": 100}  # steps of the tiny model per contender and round


def main(argv: list[str] | None = None) -> int:
    """Benchmark, report, write; RuntimeError when a measured child process fails."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (about 7 minutes on 2 cores)")
    parser.add_argument("--out", type=Path, help="folder for the JSON and markdown (default: docs/, full runs only)")
    parser.add_argument(
        "--only",
        choices=["data-scale", "encoders"],
        help="run one section; its figures replace "
        "that section's in the device's JSON (encoders: added to docs/bench/data_encoders.json)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    preload()
    quiet_transformers()
    mode = "quick" if args.quick else "full"
    out = args.out or (DOCS if mode == "full" else None)
    device = "gpu" if torch.cuda.is_available() else "cpu"
    if args.only == "encoders":
        return run_encoders(mode, out)
    if args.only:
        result = run_data_scale(mode, out / "bench" / f"{device}.json" if out else None)
    else:
        result = run(mode)
    print(report.table(result["ratios"]))
    if out is not None:
        _keep_previous(result, out / "bench" / f"{device}.json")
        write_json(out / "bench" / f"{device}.json", result)
        report.write_markdown(out / "bench", out / "PERFORMANCE.md")
        print(f"wrote {out / 'bench' / (device + '.json')} and {out / 'PERFORMANCE.md'}")
    print(json.dumps(result["ratios"]))
    return 0


def run(mode: str) -> dict:
    """Every measurement of one benchmark run; RuntimeError when a measured child process fails."""
    steps, batch, rounds, repeats, prep_repeats = SIZES[mode]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big, small = subjects.distilroberta(work), subjects.starter()
        _say(f"training: ours vs Trainer on {big.name}")
        train = train_speed.compare(big.path, steps, batch, rounds)
        _say("training: ours vs Trainer on the starter")
        starter_train = train_speed.compare(small.path, 5 * steps, 16, rounds)
        _say("host work per step: ours vs a bare loop on a tiny model")
        host = host_overhead.compare(work, HOST_STEPS[mode], rounds=rounds)
        _say("data preparation")
        prep = data_prep.compare(big.path, subjects.eli5_like_records(), repeats=prep_repeats)
        _say("fill-mask latency")
        fill = latency.versus_pipeline(big.path, repeats)
        busy = latency.during_training(small.path, repeats, train_steps=1000)
        _say("peak memory")
        mem = preview_memory.training_peak(train_speed.bench_config(big.path, 2, batch, work))
        _say("FLOP/s")
        peak = flops.matmul_peak()
        per_step = flops.step_flops(train_speed.bench_config(big.path, steps, batch, work))
        scale = data_scale.compare(mode, work, say=_say)
    achieved = per_step / train["ours"]["step_seconds"]
    ratios = {
        "train_speedup": train["speedup"],
        "train_loss_gap": train["loss_gap"],
        "starter_train_speedup": starter_train["speedup"],
        "host_overhead_ratio": host["ratio"],
        "eli5_prepare_speedup": prep["speedup"],
        "fill_mask_p50_ratio": fill["ratio_p50"],
        "fill_mask_busy_ratio": busy["ratio_p50"],
        "mfu": achieved / peak["flops_per_s"],
        **scale["ratios"],
    }
    scale["date"] = time.strftime("%Y-%m-%d")
    details = {
        "model_note": big.note,
        "steps": steps,
        "batch_size": batch,
        "train": train,
        "starter_train": starter_train,
        "host_overhead": host,
        "data_prep": prep,
        "fill_mask": fill,
        "fill_mask_during_training": busy,
        "memory": mem,
        "data_scale": scale,
        "flops": {"matmul": peak, "step_flops": per_step, "achieved_flops_per_s": achieved},
    }
    return {
        "mode": mode,
        "date": time.strftime("%Y-%m-%d"),
        "machine": report.machine(),
        "ratios": ratios,
        "details": details,
    }


def run_data_scale(mode: str, previous: Path | None) -> dict:
    """The data-scale section alone, merged into the device's previous figures when there are some; RuntimeError
    when a contender's process fails."""
    with tempfile.TemporaryDirectory() as tmp:
        scale = data_scale.compare(mode, Path(tmp), say=_say)
    scale["date"] = time.strftime("%Y-%m-%d")
    result = read_json(previous) if previous is not None else None
    if not isinstance(result, dict):
        result = {"mode": mode, "date": scale["date"], "machine": report.machine(), "ratios": {}, "details": {}}
    previous = result["details"].get("data_scale")
    if previous is not None:  # the run before, so that the page shows the range of two runs
        scale["previous"] = {k: v for k, v in previous.items() if k != "previous"}
    result["ratios"].update(scale["ratios"])
    result["details"]["data_scale"] = scale
    return result


def run_encoders(mode: str, out: Path | None) -> int:
    """The encoders' comparison, printed; with `out`, added to out/bench/data_encoders.json and its section of
    out/PERFORMANCE.md rewritten (the rest of the page is left as it is)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = data_scale.compare_encoders(data_scale.ENCODER_SIZES[mode], Path(tmp), say=_say)
    print(report.encoders_table([result]))
    if out is not None:
        study = data_scale.record_encoders(result, out / "bench" / report.ENCODERS_JSON)
        report.replace_encoders_section(out / "PERFORMANCE.md", study)
        print(f"wrote {out / 'bench' / report.ENCODERS_JSON} and {out / 'PERFORMANCE.md'}")
    return 0


def _keep_previous(result: dict, path: Path) -> None:
    """Keep the ratios of the run written before this one (same mode), so the page shows the range of two runs."""
    old = read_json(path) if path.exists() else None
    if (
        isinstance(old, dict)
        and old.get("mode") == result["mode"]
        and "train" in old.get("details", {})
        and "train" in result["details"]
    ):
        result["previous"] = {"date": old["date"], "ratios": old["ratios"]}


def _say(what: str) -> None:
    """A timestamped progress line, so a long run shows where it is."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}…", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
