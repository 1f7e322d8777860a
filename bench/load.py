"""The load benchmark: what many visitors and many runs cost the app, every contender in one run, as ratios.

    python -m bench.load [--out docs/]

- status and refresh: the status call of an up-to-date client (its cursor at the end) and a page's refresh after a
  new event (the dashboard drawn again), for a 2,000-step run / a 20-step run, in time and answer size (in the app's
  process: the handlers themselves, median of many calls);
- listing and queue position: the Runs tab's listing (over HTTP, as a page's Refresh asks it, and its handler
  alone) and a queued run's position, with 1,000 runs / with 10;
- fill-mask: one app over HTTP on the starter; throughput with 20 concurrent clients / with one client, and the p95
  of a request among 20 clients / the p50 of one request alone;
- memory: the app's resident memory after 100 visitors came, filled masks, asked a run's status and left, minus before.

The runs are grown from one short real run (`bench.grown_runs`). Figures go to docs/bench/load.json (the last two
runs kept) and docs/PERFORMANCE.md's load section.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import gradio as gr

from bench import host_overhead, report
from bench.grown_runs import grown_run, many_runs, short_run
from bench.latency import percentiles
from mlm_core.models.starter import default_examples
from mlm_core.runs.records import RunIdentity
from mlm_core.service.workspace import Workspace
from mlm_core.system.atomic_files import read_json, write_json
from studio.access import Access
from studio.form import first_values
from studio.runs_tab import RunsTab
from studio.train_tab import TrainTab

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SENTENCES = [example["text"] for example in default_examples()] or ["The <mask> statement exits the loop."]
CLIENTS, REQUESTS_EACH, ALONE = 20, 5, 20
VISITORS = 100


def _median_s(call, repeats: int) -> float:
    """Median seconds of `repeats` calls, after one."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _page(root: Path) -> tuple[Workspace, TrainTab, RunsTab]:
    """The app's handlers on a runs folder, as the page builds them (no server)."""
    studio = Workspace.open(root)
    with gr.Blocks():
        visitor = gr.BrowserState("")
        train = TrainTab(studio, Access(), visitor, ["starter"], first_values(False))
        runs = RunsTab(studio, Access(), visitor, (gr.Tabs(), gr.Textbox()))
    return studio, train, runs


def _sent_bytes(values) -> int:
    """Bytes of a refresh's values as JSON (figures as Plotly JSON)."""
    return sum(len(v.to_json()) if hasattr(v, "to_json") else len(json.dumps(v, default=str)) for v in values)


def history_costs(short, work: Path, repeats: int = 30) -> dict:
    """Status call and refresh for runs of 20 and 2,000 steps: median seconds and bytes."""
    root = work / "grown"
    root.mkdir()
    runs = {steps: grown_run(short, root / f"20260101-000000-tiny-grown-{steps:08d}", steps) for steps in (20, 2000)}
    studio, train, _ = _page(root)
    visitor, out = Access().identify(""), {}
    try:
        for steps, run in runs.items():
            cursor = str(len(studio.events(run)))

            def refresh(run=run):
                train._boards.clear()  # a new event: the dashboard is drawn again
                return train.board(run, visitor, "")

            out[steps] = {
                "events": len(studio.events(run)),
                "status_s": _median_s(lambda run=run, cursor=cursor: train.status_json(run.name, cursor), repeats),
                "status_bytes": len(train.status_json(run.name, cursor)),
                "refresh_s": _median_s(refresh, repeats),
                "refresh_bytes": _sent_bytes(refresh()),
            }
    finally:
        studio.close()
    return out


def folder_costs(short, work: Path, repeats: int = 30, rounds: int = 300) -> dict:
    """The Runs tab's listing (the `list_runs` call over HTTP, median of `repeats`, and its handler alone) and a
    queued run's position, with 10 and 1,000 runs: median seconds. The handlers take microseconds: they are timed in
    `rounds` interleaved between the two folders, so that what the machine does meanwhile weighs on both alike."""
    out, pages = {}, {}
    for count in (10, 1000):
        root = work / f"runs-{count}"
        runs = many_runs(short, root, count)
        process, url = _start_app(root, work / f"app-{count}.log")
        try:
            out[count] = {"listing_http_s": _listing_over_http(url, repeats)}
        finally:
            process.kill()
            process.wait(timeout=30)
        studio, _, listing = _page(root)
        studio.queue.close()  # nothing trains here: a queued run's position is only asked
        queued = runs[0]  # the oldest: the listing's last row, the queue's only run
        queued.set_identity(RunIdentity(label="queued", created=queued.identity().created, queued_at=time.time()))
        studio.index.changed(queued)
        pages[count] = (
            studio,
            lambda listing=listing: listing.listing(""),
            lambda s=studio, q=queued: s.queue.position(q),
        )
    try:
        times = {(count, kind): [] for count in pages for kind in ("listing_s", "position_s")}
        for _ in range(rounds):
            for count, (_, listing, position) in pages.items():
                for kind, call in (("listing_s", listing), ("position_s", position)):
                    started = time.perf_counter()
                    call()
                    times[count, kind].append(time.perf_counter() - started)
        for (count, kind), measured in times.items():
            out[count][kind] = statistics.median(measured[1:])
    finally:
        for studio, *_ in pages.values():
            studio.close()
    return out


def _start_app(runs: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port, serving `runs`; (process, URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    env.update(MLM_STUDIO_RUNS=str(runs), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    with log.open("a") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the app did not start; see {log}") from None
            time.sleep(0.5)


def _listing_over_http(url: str, repeats: int) -> float:
    """Median seconds of the Runs tab's listing asked over HTTP (`list_runs`), as a page's Refresh asks it."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    return _median_s(lambda: client.predict("", api_name="/list_runs"), repeats)


def _resident_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _fill(client, number: int) -> float:
    """Seconds of one fill-mask request (the `number`th: the starter's examples in turn, as visitors try them)."""
    started = time.perf_counter()
    client.predict(SENTENCES[number % len(SENTENCES)], 5, "starter", "", "", api_name="/fill_mask")
    return time.perf_counter() - started


def served_costs(work: Path) -> dict:
    """Fill-mask alone and among 20 concurrent clients, then 100 visitors, on one app over HTTP."""
    from gradio_client import Client

    process, url = _start_app(work / "app-runs", work / "app.log")
    try:
        alone_client = Client(url, verbose=False)
        for number in range(3):
            _fill(alone_client, number)  # the model loaded, the first calls' costs paid
        started = time.perf_counter()
        alone = [_fill(alone_client, number) for number in range(ALONE)]
        alone_rate = ALONE / (time.perf_counter() - started)

        clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
        together: list[float] = []
        lock = threading.Lock()

        def visit(client, first: int) -> None:
            for number in range(first, first + REQUESTS_EACH):
                took = _fill(client, number)
                with lock:
                    together.append(took)

        threads = [threading.Thread(target=visit, args=(c, n * REQUESTS_EACH)) for n, c in enumerate(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together_rate = len(together) / (time.perf_counter() - started)
        del clients

        before = _resident_mb(process.pid)
        for number in range(VISITORS):
            visitor = Client(url, verbose=False)
            _fill(visitor, number)
            visitor.predict("", "0", api_name="/status")
            del visitor
        time.sleep(5)
        after = _resident_mb(process.pid)
    finally:
        process.kill()
        process.wait(timeout=30)
    return {
        "alone": {**percentiles(alone), "requests_per_s": alone_rate},
        "together": {**percentiles(together), "requests_per_s": together_rate, "clients": CLIENTS},
        "memory_mb": {"before": before, "after": after, "visitors": VISITORS},
    }


def run(work: Path) -> dict:
    """Every measurement; the ratios and the figures behind them."""
    model = host_overhead.tiny_model(work)
    short = short_run(model, work / "short")
    history = history_costs(short, work)
    folder = folder_costs(short, work)
    served = served_costs(work)
    ratios = {
        "fill_throughput_ratio": served["together"]["requests_per_s"] / served["alone"]["requests_per_s"],
        "fill_p95_ratio": served["together"]["p95_ms"] / served["alone"]["p50_ms"],
        "status_time_ratio": history[2000]["status_s"] / history[20]["status_s"],
        "status_size_ratio": history[2000]["status_bytes"] / history[20]["status_bytes"],
        "refresh_time_ratio": history[2000]["refresh_s"] / history[20]["refresh_s"],
        "refresh_size_ratio": history[2000]["refresh_bytes"] / history[20]["refresh_bytes"],
        "listing_ratio": folder[1000]["listing_http_s"] / folder[10]["listing_http_s"],
        "listing_handler_ratio": folder[1000]["listing_s"] / folder[10]["listing_s"],
        "position_ratio": folder[1000]["position_s"] / folder[10]["position_s"],
        "memory_growth_mb": served["memory_mb"]["after"] - served["memory_mb"]["before"],
    }
    when = time.strftime("%Y-%m-%d %H:%M")
    return {"date": when, "machine": report.machine(), "ratios": ratios, "history": history, "folder": folder, **served}


def table(ratios: dict) -> str:
    """The targets and this run's figures, as a markdown table."""
    rows = ["| what | measured | target | met |", "| --- | --- | --- | --- |"]
    for key, what, target, higher in report.LOAD_TARGETS:
        value = ratios[key]
        met = value >= target if higher else value <= target
        rows.append(f"| {what} | {value:.2f} | {'≥' if higher else '≤'} {target:g} | {'yes' if met else 'no'} |")
    return "\n".join(rows)


def write_section(performance: Path, kept: dict) -> None:
    """Put the load section in PERFORMANCE.md (last, in place of the one there), the rest as it is."""
    text = performance.read_text(encoding="utf-8") if performance.is_file() else report.HEADER
    before = text.split(report.LOAD_HEADING, 1)[0].rstrip("\n")
    performance.write_text(before + "\n\n" + report.load_section(kept).lstrip("\n"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the docs folder to add the figures to (default: print only)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp))
    print(table(result["ratios"]))
    if args.out is not None:
        path = args.out / "bench" / "load.json"
        kept = read_json(path)
        runs = (kept.get("runs", []) if isinstance(kept, dict) else [])[-1:] + [result]
        write_json(path, {"runs": runs})
        write_section(args.out / "PERFORMANCE.md", {"runs": runs})
        print(f"wrote {path} and {args.out / 'PERFORMANCE.md'}")
    print(json.dumps(result["ratios"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
