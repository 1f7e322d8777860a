"""The benchmark's verdicts, its table on stdout, and docs/PERFORMANCE.md built from every device's JSON."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

# (key in the ratios, what it compares, target, True when higher is better)
TARGETS = [
    ("train_speedup", "training tokens/s, ours / Trainer recipe (DistilRoBERTa shape)", 1.6, True),
    ("train_loss_gap", "final eval loss, |ours / Trainer - 1|", 0.01, False),
    ("starter_train_speedup", "training tokens/s, ours / Trainer recipe (starter)", 1.0, True),
    ("host_overhead_ratio", "step time of a tiny model, our loop / a bare loop on ready batches", 1.5, False),
    ("eli5_prepare_speedup", "ELI5-shaped data prep, guides' (num_proc=4) / ours (prepare_data)", 1.0, True),
    ("fill_mask_p50_ratio", "fill-mask p50, ours / pipeline (DistilRoBERTa shape)", 0.6, False),
    ("fill_mask_busy_ratio", "fill-mask p50 while a run trains in its child process / idle (starter)", 1.3, False),
    ("mfu", "our training FLOP/s / measured matmul peak", 0.6, True),
    ("scale_speedup_min", "data prep of three text sizes (table below): guides' time / ours (smallest)", 2.0, True),
    ("scale_growth", "data prep time, ours, largest / middle size (linear: 4)", 4.5, False),
    ("scale_memory_ratio", "data prep peak memory at the largest size, ours (with workers) / guides'", 1.0, False),
    ("scale_memory_ratio_wwm", "the same, ours with whole-word masking / guides'", 1.0, False),
]


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cpu_threads_torch": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    import transformers

    info["transformers"] = transformers.__version__
    return info


def verdicts(ratios: dict) -> list[tuple[str, float | None, str, bool | None]]:
    """(what, measured, target text, met) for each target."""
    rows = []
    for key, what, target, higher in TARGETS:
        value = ratios.get(key)
        rows.append((what, value, f"{'≥' if higher else '≤'} {target:g}", _met(value, target, higher)))
    return rows


def _met(value: float | None, target: float, higher: bool) -> bool | None:
    """Whether `value` meets `target` (None when not measured)."""
    return None if value is None else (value >= target if higher else value <= target)


def _rows(result: dict) -> str:
    """The verdict table's rows; with an earlier run of the same mode, both values ("earlier, later"), met when
    both meet the target."""
    earlier = (result.get("previous") or {}).get("ratios", {})
    lines = []
    for key, what, target, higher in TARGETS:
        values = [v for v in (earlier.get(key), result["ratios"].get(key)) if v is not None]
        shown = ", ".join(f"{v:.3f}" for v in values) or "n/a"
        met = [_met(v, target, higher) for v in values]
        verdict = "-" if not met else "yes" if all(met) else "**no**"
        lines.append(f"| {what} | {shown} | {'≥' if higher else '≤'} {target:g} | {verdict} |")
    return "\n".join(lines)


def table(ratios: dict) -> str:
    """Plain-text table of the verdicts."""
    lines = [f"{'measure':<70} {'value':>8}  {'target':>7}  ok"]
    for what, value, target, met in verdicts(ratios):
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"{what:<70} {shown:>8}  {target:>7}  {'-' if met is None else 'yes' if met else 'NO'}")
    return "\n".join(lines)


def write_markdown(json_dir: Path, out: Path) -> None:
    """docs/PERFORMANCE.md from every `<device>.json` the benchmark has written."""
    parts = [HEADER]
    for path in sorted(json_dir.glob("*.json")):
        figures = json.loads(path.read_text(encoding="utf-8"))
        if "machine" in figures:  # a device's run, not a study such as added_words.json
            parts.append(_section(figures))
    encoders = json_dir / ENCODERS_JSON
    if encoders.is_file():
        parts.append(encoders_section(json.loads(encoders.read_text(encoding="utf-8"))))
    load = json_dir / LOAD_JSON
    if load.is_file():
        parts.append(load_section(json.loads(load.read_text(encoding="utf-8"))))
    out.write_text("\n".join(parts), encoding="utf-8")


# The load benchmark's (`python -m bench.load`), as TARGETS
LOAD_TARGETS = [
    ("fill_throughput_ratio", "fill-mask requests/s, 20 concurrent clients / one client", 6.0, True),
    ("fill_p95_ratio", "fill-mask p95 among 20 concurrent clients / p50 of one request alone", 3.0, False),
    ("status_time_ratio", "status call of an up-to-date client, 2,000-step run / 20-step run", 1.5, False),
    ("status_size_ratio", "its answer's size, 2,000-step run / 20-step run", 1.5, False),
    ("refresh_time_ratio", "a page's refresh after a new event, 2,000-step run / 20-step run", 1.5, False),
    ("refresh_size_ratio", "what that refresh sends, 2,000-step run / 20-step run", 1.5, False),
    ("listing_ratio", "the Runs tab's listing over HTTP, 1,000 runs / 10 runs", 1.5, False),
    ("listing_handler_ratio", "its handler alone in the app's process, 1,000 runs / 10 runs", 1.5, False),
    ("position_ratio", "a queued run's position, 1,000 runs / 10 runs", 1.5, False),
    ("memory_growth_mb", "the app's resident memory after 100 visitors came and went, minus before (MB)", 200, False),
]
LOAD_JSON = "load.json"
LOAD_HEADING = "## Load: many visitors, long runs, many runs ("  # `python -m bench.load --out docs`
ENCODERS_JSON = "data_encoders.json"  # `python -m bench.data_scale --encoders --out docs/bench/data_encoders.json`

HEADER = """# Performance

Measured by `python -m bench` (full run; `--quick` is the seven-minute version). Each section is one
run on one machine: every ratio compares contenders measured in that run, interleaved, on the same model, data and
hyper-parameters. Re-run it to refresh this page; the raw figures are in `docs/bench/<device>.json`.
"""


def _section(result: dict) -> str:
    """One device's figures as markdown."""
    m, d = result["machine"], result["details"]
    where = m.get("gpu") or f"{m['cpu']}, {m['cpu_threads_torch']} torch threads"
    rows = _rows(result)
    runs = (
        f"2 {result['mode']} runs: {result['previous']['date']} and {result['date']}"
        if result.get("previous")
        else f"{result['mode']} run, {result['date']}"
    )
    scale = _scale_section(d["data_scale"]) if "data_scale" in d else ""
    scale += f"\n{result['note']}\n" if result.get("note") else ""  # what a reader must know to read this run
    if "train" not in d:  # only the data-scale section was run on this device
        return (
            f"\n## {where} ({runs})\n\n| measure | value | target | met |\n| --- | --- | --- | --- |\n{rows}\n{scale}"
        )
    tr, st, fm, busy = d["train"], d["starter_train"], d["fill_mask"], d["fill_mask_during_training"]
    prep, mem, fl = d["data_prep"], d["memory"], d["flops"]
    spread = (
        (
            f" ({tr['rounds']} interleaved rounds, seed r in round r: the ratio is the median of the rounds' "
            f"ratios, range {tr['speedup_range'][0]:.2f}-{tr['speedup_range'][1]:.2f}; losses are the rounds' "
            f"means)"
        )
        if "speedup_range" in tr
        else ""
    )
    host = d.get("host_overhead")
    host_line = (
        (
            f"\n- Host work per step (a {host['steps']}-step run of a 1-layer, 16-unit model, batch "
            f"{host['batch_size']}, {host['rounds']} rounds): our loop {host['ours_step_ms']:.1f} ms vs a bare "
            f"loop on batches masked and moved beforehand {host['bare_step_ms']:.1f} ms ({host['extra_ms']:+.1f} "
            f"ms a step; ratio range {host['ratio_range'][0]:.2f}-{host['ratio_range'][1]:.2f})."
        )
        if host
        else ""
    )
    return f"""
## {where} ({runs})
torch {m["torch"]}, transformers {m["transformers"]}, Python {m["python"]}, {m["platform"]}. Model: {d["model_note"]}.

| measure | value | target | met |
| --- | --- | --- | --- |
{rows}

- Training, block 128, batch {d["batch_size"]}, {tr["ours"]["timed_steps"]} timed steps each: ours
  {tr["ours"]["tokens_per_s"]:,.0f} tokens/s vs Trainer {tr["trainer"]["tokens_per_s"]:,.0f}; eval loss after
  {d["steps"]} steps {tr["ours"]["eval_loss"]:.4f} vs {tr["trainer"]["eval_loss"]:.4f}{spread}. Starter: ours
  {st["ours"]["tokens_per_s"]:,.0f} vs {st["trainer"]["tokens_per_s"]:,.0f} tokens/s.{host_line}
{_prep_line(prep)}- Fill-mask, one sentence, top 5, guesses of one token (the pipeline's unit): ours p50
  {fm["ours"]["p50_ms"]:.1f} ms / p95 {fm["ours"]["p95_ms"]:.1f} ms,
  pipeline p50 {fm["pipeline"]["p50_ms"]:.1f} ms / p95 {fm["pipeline"]["p95_ms"]:.1f} ms; same predictions:
  {fm["identical_predictions"]}. {_page_fill_mask(busy)}, while a training run works in its own process, as the
  app runs it: p50
  {busy["training"]["p50_ms"]:.1f} ms vs {busy["idle"]["p50_ms"]:.1f} ms idle ({busy["samples_while_training"]}
  samples).
- Peak memory of a training run (`python -m mlm_core train`, batch {d["batch_size"]}):
  {mem["peak_rss_bytes"] / 2**30:.2f} GiB resident{" (host memory only)" if m.get("gpu") else ""}. The app's
  pre-flight, from its own timed steps in this process, showed {mem["preflight_estimate_bytes"] / 2**30:.2f} GiB
  and {mem["preflight_seconds_per_step"]:.2f} s per step (the loop above: {tr["ours"]["step_seconds"]:.2f} s).
- Compute: {fl["step_flops"] / 1e9:,.1f} GFLOP per training step (counted by `torch.utils.flop_counter`; LM head at
  masked positions only), {fl["achieved_flops_per_s"] / 1e9:,.1f} GFLOP/s achieved vs a {fl["matmul"]["size"]}²
  {fl["matmul"]["dtype"]} matmul peak of {fl["matmul"]["flops_per_s"] / 1e9:,.1f} GFLOP/s.
{scale}"""


def _prep_line(prep: dict) -> str:
    """The ELI5-shaped data preparation, where this run timed `prepare_data` (earlier runs timed list-based helpers
    no run executes: left out)."""
    if "ours_blocks" not in prep:
        return ""
    return (
        f"- Data preparation, {prep['documents']:,} ELI5-shaped records ({prep['tokens']:,} tokens), load to\n"
        f"  split: `prepare_data` (the records as an uploaded .jsonl) {prep['prepare_ours']:.2f} s vs the guides'\n"
        f"  `map(preprocess_function)` + `map(group_texts)` {prep['prepare_guide']:.2f} s (num_proc=4);\n"
        f"  {prep['ours_blocks']:,} vs {prep['guide_blocks']:,} blocks (the guides drop a remainder per map batch);"
        f"\n  the first map batch's blocks identical: {prep['identical']}.\n"
    )


def _timing(result: dict) -> str:
    """Wall seconds, and CPU seconds where measured."""
    cpu = result.get("cpu_seconds")
    return f"{result['seconds']:.1f} s" + ("" if cpu is None else f" ({cpu:.0f} CPU)")


def _each(rows: list, value, form: str) -> str:
    """One figure per run, comma-separated."""
    return ", ".join(form.format(value(r)) for r in rows)


def _gib(value: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{value / 2**30:.2f}"


def _scale_section(scale: dict) -> str:
    """The data-scale table: time and peak memory of both recipes at each size, over the last two runs."""
    runs = [r for r in (scale.get("previous"), scale) if r is not None]
    lines = []
    for i, row in enumerate(scale["rows"]):
        rows = [r["rows"][i] for r in runs if len(r["rows"]) > i and r["rows"][i]["megabytes"] == row["megabytes"]]
        wwm = [w["ours"] for r in runs for w in r["whole_word"] if w["megabytes"] == row["megabytes"]]
        workers = " + ".join(_gib(b) for b in row["ours"]["peak_worker_bytes"]) or "none"
        whole = (
            (
                f"{_each(wwm, lambda w: w['seconds'], '{:.1f}')} s, "
                f"{_each(wwm, lambda w: w['peak_total_bytes'] / 2**30, '{:.2f}')} GiB"
            )
            if wwm
            else "-"
        )
        lines.append(
            f"| {row['megabytes']} MB | {_each(rows, lambda r: _timing(r['guide']), '{}')} | "
            f"{_each(rows, lambda r: r['guide']['peak_total_bytes'] / 2**30, '{:.2f}')} GiB | "
            f"{_each(rows, lambda r: _timing(r['ours']), '{}')} | "
            f"{_each(rows, lambda r: r['ours']['peak_total_bytes'] / 2**30, '{:.2f}')} GiB (last run: "
            f"{_gib(row['ours']['peak_main_bytes'])} + workers {workers}) | "
            f"{_each(rows, lambda r: r['speedup'], '{:.2f}')}x | {whole} |"
        )
    table = "\n".join(lines)
    if len(runs) > 1:
        earlier = "; ".join(f"{what}: {v:.3f}" for what, v, _, _ in verdicts(runs[0]["ratios"]) if v is not None)
        table += f"\n\nThe earlier run's ratios: {earlier}."
    dates = " and ".join(r.get("date", "") for r in runs)
    repeats = scale.get("repeats", 1)
    return f"""
### Data preparation at scale ({len(runs)} run{"s" if len(runs) > 1 else ""}: {dates})
Generated text files of paragraphs from the built-in corpora, the starter tokenizer, block {scale["block_size"]};
load, tokenize, group and split, each contender in its own process, timed inside it; peak memory is each process's
own peak resident set (VmHWM), ours adding its tokenizer workers'. The guides' recipe: `load_dataset("text",
sample_by="paragraph")`, batched `map` of the tokenizer, batched `map` of `group_texts` (both `num_proc=4`, as the
guides write them; the guides' peak adds the most unique memory (USS) its map processes held at once, sampled every
0.5 s), `train_test_split`.
Each contender is measured {repeats} time(s) per size in A-B-B-A order: the shortest time counts (the least disturbed
by other work on this shared machine), and the highest peak; "CPU" is the CPU seconds of the process and its
workers. Where two runs were made, each cell gives both ("earlier, later"); the targets above are checked on the
later one.

| text | guides' time | guides' peak | our time | our peak (main + workers) | speed-up | ours, whole-word masking |
| --- | --- | --- | --- | --- | --- | --- |
{table}
"""


def _page_fill_mask(busy: dict) -> str:
    """What the fill-mask timed beside a training run asked for (runs before whole-word guesses asked one token)."""
    pieces = busy.get("max_pieces", 1)
    return (
        "The starter's fill-mask, one-token guesses"
        if pieces == 1
        else f"The page's fill-mask on the starter (whole-word guesses of up to {pieces} pieces)"
    )


def _peak(result: dict) -> str:
    """Peak memory in GiB, with the workers' share when there were workers."""
    workers = result.get("peak_worker_bytes") or []
    total = f"{result['peak_total_bytes'] / 2**30:.2f} GiB"
    return total if not workers else f"{total} ({_gib(result['peak_main_bytes'])} + {' + '.join(map(_gib, workers))})"


def _times(result: dict) -> str:
    """Both measured times (the shorter counts), and the CPU seconds of the shorter."""
    shown = "/".join(f"{t:.1f}" for t in result.get("all_seconds", [result["seconds"]]))
    return f"{shown} s ({result['cpu_seconds']:.1f} CPU)"


def _others(row: dict) -> str:
    """The most CPU that other programs took during any of a line's four measurements, as a share of the machine."""
    shares = [row[name]["others_share"] for name in ("pool", "threads") if "others_share" in row[name]]
    return f"{max(shares):.0%}" if shares else "n/a"


def encoders_table(runs: list[dict]) -> str:
    """The encoders' comparison as a markdown table: one line per size, whole-word setting and run."""
    lines = [
        "| text | whole-word | run | pool: time | pool: peak (main + workers) | threads: time | threads: peak | "
        "time, threads / pool | peak, threads / pool | others' CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = sorted({(r["megabytes"], r["whole_word"]) for run in runs for r in run["rows"]})
    for megabytes, whole_word in keys:
        for number, run in enumerate(runs, start=1):
            for r in (r for r in run["rows"] if (r["megabytes"], r["whole_word"]) == (megabytes, whole_word)):
                lines.append(
                    f"| {megabytes:g} MB | {'on' if whole_word else 'off'} | {number} | "
                    f"{_times(r['pool'])} | {_peak(r['pool'])} | {_times(r['threads'])} | "
                    f"{_peak(r['threads'])} | {r['time_ratio']:.2f} | {r['memory_ratio']:.2f} | "
                    f"{_others(r)} |"
                )
    return "\n".join(lines)


ENCODERS_TITLE = "\n## Data stack: worker pool against the library's threads"


def replace_encoders_section(page: Path, study: dict) -> None:
    """`page` with its encoders' section (the last one, when it has one) replaced by this study's."""
    text = page.read_text(encoding="utf-8") if page.exists() else HEADER
    if ENCODERS_TITLE in text:
        text = text[: text.index(ENCODERS_TITLE)]
    page.write_text(text.rstrip("\n") + "\n" + encoders_section(study), encoding="utf-8")


def encoders_section(study: dict) -> str:
    """The page's section on the data stack's encoders, from `docs/bench/data_encoders.json`."""
    runs = study["runs"]
    dates = ", ".join(f"run {i} {r['date']}" for i, r in enumerate(runs, start=1))
    note = f"\n{study['note']}\n" if study.get("note") else ""
    return f"""{ENCODERS_TITLE} ({len(runs)} run{"s" if len(runs) > 1 else ""}: {dates})
`python -m bench.data_scale --encoders`: our `prepare_data` (load, tokenize into the token store, group, split;
the starter tokenizer, block {runs[-1]["block_size"]}, on {runs[-1]["cores"]} cores) on generated text files,
each contender in its own process, timed inside it, with `TOKENIZERS_PARALLELISM` unset. "pool": tokenizer worker
processes, one per core (up to 8), each with the library's threads off, fed through pipes (forced here at every size;
the preparation picks them from 4 MB). "threads": the same pipeline tokenizing in its own process with the library's
`encode_batch_fast` (`encode_batch`, which gives the offsets, with whole-word masking), whose Rayon threads use every
core. Each is measured twice per line in A-B-B-A order (which one starts alternates from line to line): both times
are shown, the shorter counts, and the higher peak; "CPU" is the CPU seconds of the process and its workers for the
shorter; peak memory is the main process's VmHWM plus its workers'. Ratios compare the two within one run. "Others'
CPU": the most CPU time that other programs (this machine is shared) used during any of a line's four measurements,
as a share of all cores; where it is high, the times of that line are disturbed.

{encoders_table(runs)}
{note}"""


def load_section(kept: dict) -> str:
    """docs/PERFORMANCE.md's load section from docs/bench/load.json (its last runs side by side)."""
    runs = kept["runs"]
    when = " and ".join(run["date"] for run in runs)
    head = " | ".join(f"run {n}" for n in range(1, len(runs) + 1))
    rows = []
    for key, what, target, higher in LOAD_TARGETS:
        values = [run["ratios"].get(key) for run in runs]
        shown = " | ".join("–" if v is None else f"{v:.2f}" for v in values)
        met = all(v is not None and (v >= target if higher else v <= target) for v in values)
        rows.append(f"| {what} | {shown} | {'≥' if higher else '≤'} {target:g} | {'yes' if met else 'no'} |")
    last = runs[-1]
    alone, together, memory = last["alone"], last["together"], last["memory_mb"]
    where = last.get("machine", {}).get("cpu", "this machine")
    return f"""
{LOAD_HEADING}{len(runs)} runs of `python -m bench.load`: {when})

On {where}. Runs are grown from one short real run (`bench/grown_runs.py`). The status call, the refresh, the
listing's handler and the position are timed in the app's process (medians; the listing's handler and the position
interleaved between the two folders), the listing also over HTTP as a page's Refresh asks it; fill-mask and memory on
one app over HTTP, with the starter's examples in turn.

| what | {head} | target | met |
| --- | {" | ".join("---" for _ in runs)} | --- | --- |
{chr(10).join(rows)}

In the last run one client alone made {alone["requests_per_s"]:.1f} fill-mask requests a second (p50
{alone["p50_ms"]:.0f} ms over HTTP), 20 concurrent clients {together["requests_per_s"]:.1f} (p50
{together["p50_ms"]:,.0f} ms, p95 {together["p95_ms"]:,.0f} ms). The app held {memory["before"]:,.0f} MB before its
{memory["visitors"]} visitors and {memory["after"]:,.0f} MB after.
"""
