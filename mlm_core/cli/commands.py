"""Headless CLI over the same functions the app uses: train, fill-mask, generate, push, deploy-space, info."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from huggingface_hub import SpaceHardware

from mlm_core.cli.progress_bar import ProgressPrinter
from mlm_core.config import FILE_DATASET, TrainConfig, default_learning_rate
from mlm_core.service import deploy, hosting, launch, playground, workspace
from mlm_core.service.launch import EXIT_STOPPED
from mlm_core.service.workspace import COMPLETED, STOPPED, RunDir, RunResults, list_runs, runs_root

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print the message as one line on stderr and raise SystemExit(2)."""
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _with_train_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one option per TrainConfig field (its help from the field) to `parser`."""
    for f in dataclasses.fields(TrainConfig):
        flag, kind = "--" + f.name.replace("_", "-"), str(f.type)
        if kind == "bool":
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=_escaped(f.metadata["help"]))
        else:
            convert = int if kind.startswith("int") else float if kind.startswith("float") else str
            parser.add_argument(flag, type=convert, default=argparse.SUPPRESS, help=_escaped(f.metadata["help"]))
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser; train options come from TrainConfig's fields and their help."""
    parser = _Parser(prog="python -m mlm_core", description="Fine-tune and use masked and causal language models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = _with_train_options(
        commands.add_parser("train", help="fine-tune a model; progress on stderr, summary on stdout")
    )
    train.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its checkpoint")
    preview = _with_train_options(
        commands.add_parser(
            "preview", help="what a run with these options would train on, and its time and memory on this machine"
        )
    )
    preview.add_argument("--json", action="store_true", help="print the preview as JSON")
    queued = commands.add_parser(
        "train-queued",
        help="train a run the app's queue made (its settings, probe "
        "sentences and budget), as the queue's child process does",
    )
    queued.add_argument("run", type=Path, help="the run's folder")
    fill = commands.add_parser("fill-mask", help="predict the words behind <mask>")
    fill.add_argument(
        "--model", required=True, help="a run folder (its saved model), a model folder, 'starter', or a hub id"
    )
    fill.add_argument("--top-k", type=int, default=5, help="how many guesses per mask")
    fill.add_argument("--targets", help="comma-separated candidate words to score instead of the whole vocabulary")
    fill.add_argument("--json", action="store_true", help="print the guesses as JSON (the API's shape)")
    fill.add_argument("text", help="text with one or more <mask> (or [MASK])")
    gen = commands.add_parser("generate", help="continue a prompt with a causal model")
    gen.add_argument("--model", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=50)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    gen.add_argument("--seed", type=int)
    gen.add_argument("prompt")
    runs = commands.add_parser("runs", help="list the runs of a runs folder with their status")
    runs.add_argument(
        "--root",
        type=Path,
        help="the runs folder (default: MLM_STUDIO_RUNS, /data/mlm-studio-runs on a Space, else ./runs)",
    )
    push = commands.add_parser("push", help="upload a finished run's model, tokenizer and card to the hub")
    push.add_argument("run", type=Path, help="the run's folder")
    push.add_argument("repo", help="the hub repository to create or update, 'your-name/model-name'")
    push.add_argument(
        "--token-file",
        type=Path,
        help="a file holding a token that may write (default: HF_TOKEN, "
        "else the token `hf auth login` saved); never printed",
    )
    push.add_argument("--public", action="store_true", help="make a new repository public (default: private)")
    space = commands.add_parser(
        "deploy-space",
        help="create or update a Gradio Space on the hub and upload the "
        "app to it (the files --dry-run lists); print its URL",
    )
    space.add_argument("repo", help="the Space to create or update, 'owner/space-name'")
    space.add_argument(
        "--token-file",
        type=Path,
        help="a file holding a token that may write (default: HF_TOKEN, "
        "else the token `hf auth login` saved); never printed",
    )
    space.add_argument("--private", action="store_true", help="make a new Space private (default: public)")
    space.add_argument(
        "--hardware",
        choices=[h.value for h in SpaceHardware],
        metavar="HARDWARE",
        help="hardware for a new Space, e.g. zero-a10g (default: the hub's; the README's "
        "suggested_hardware is only a suggestion); on ZeroGPU the uploaded requirements.txt pins the torch it lists",
    )
    space.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=deploy.PROJECT_ROOT,
        help="the folder holding app.py (default: this project's)",
    )
    space.add_argument("--dry-run", action="store_true", help="print the files that would be uploaded; upload nothing")
    export = commands.add_parser("export", help="zip a finished run's model, tokenizer, card and results")
    export.add_argument("run", type=Path, help="the run's folder")
    commands.add_parser("info", help="device, hub reachability, the offline defaults and where runs are kept")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one line on stderr and exit code 2, never a traceback.

    A bad argument raises SystemExit(2) (and --help SystemExit(0)); other errors are one line and exit code 1, or,
    with MLM_STUDIO_DEBUG=1, re-raised with their traceback.
    """
    try:
        debug = hosting.settings.current().debug
    except ValueError as error:  # a setting that is not of its kind
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not debug:
        warnings.simplefilter("ignore")
    args = build_parser().parse_args(argv)
    handlers = {
        "train": _train,
        "fill-mask": _fill_mask,
        "generate": _generate,
        "train-queued": _train_queued,
        "preview": _preview,
        "runs": _runs,
        "push": _push,
        "export": _export,
        "deploy-space": _deploy_space,
        "info": _info,
    }
    try:
        return handlers[args.command](args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # the user gets one line; MLM_STUDIO_DEBUG=1 shows the traceback
        if debug:
            raise
        print(f"error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1


def train_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the given options and the app's defaults; with --resume, the run's saved settings.
    ValueError naming the field when a required option is missing or a value (given or saved) is not valid."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if getattr(args, "resume", False):
        if "output_dir" not in given:
            raise ValueError("output_dir: --resume needs --output-dir, the folder of the run to continue")
        run = RunDir(given["output_dir"])
        return TrainConfig.from_dict({**(run.config().to_dict() if run.is_run() else {}), **given})
    if "dataset_file" in given:
        given.setdefault("dataset", FILE_DATASET)
    for name in ("model", "dataset"):
        if name not in given:
            raise ValueError(f"{name}: --{name.replace('_', '-')} is required (see --help)")
    given.setdefault("learning_rate", default_learning_rate(given["model"]))
    return TrainConfig.from_dict(given)


def _train(args: argparse.Namespace) -> int:
    """Train with a progress bar on stderr and a one-line summary on stdout; Ctrl-C or SIGTERM stops cleanly."""
    config = train_config(args)
    with _stop_on_signals() as stop, ProgressPrinter() as printer:
        results = launch.train(config, on_event=printer, stop=stop, resume=args.resume)
    print(summary(results, config))
    code = 0 if results.status == COMPLETED else EXIT_STOPPED
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under `accelerate launch` every process has finished its work; tearing down the gloo process group at exit
        # aborted or hung now and then (a peer already gone), so leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def summary(results: RunResults, config: TrainConfig) -> str:
    """One line that says how the run went."""
    if results.status == STOPPED and not results.steps:
        return f"stopped before the first step; nothing was saved, so {config.output_dir} can be used again"
    rate = results.tokens / results.seconds if results.seconds else 0.0
    head = (
        f"{results.status} {config.output_dir}: {results.steps:,} steps, {results.tokens:,} tokens "
        f"in {results.seconds:.1f} s ({rate:,.0f} tokens/s)"
    )
    measured = ""
    if results.base_perplexity is not None and results.final_perplexity is not None:
        measured = f"; perplexity {results.base_perplexity:.2f} -> {results.final_perplexity:.2f}"
        if results.final_top1 is not None and results.base_top1 is not None:
            measured += (
                f", {results.accuracy_counts or 'tokens'} guessed right {results.base_top1:.1%} -> "
                f"{results.final_top1:.1%} (top 5: {results.base_top5:.1%} -> {results.final_top5:.1%}) "
                f"on {results.eval_blocks:,} held-out blocks"
            )
    if results.added_words:
        measured += f"; {len(results.added_words):,} of the text's words added as tokens"
        if results.tokens_saved is not None:
            measured += f" ({results.tokens_saved:.1%} fewer tokens)"
        measured += ", so its perplexities do not compare with a run without them"
    if results.status == COMPLETED:
        return f"{head}{measured}; model in {RunDir(config.output_dir).model_path}"
    return f"{head}{measured}; resume with: python -m mlm_core train --output-dir {config.output_dir} --resume"


def _runs(args: argparse.Namespace) -> int:
    """Print every run of the runs folder with its status and perplexities, newest first."""
    root = args.root or runs_root()
    runs = list_runs(root)
    if not runs:
        print(f"no runs in {root}")
        return 0
    print(f"{'run':<48} {'status':<12} {'steps':>7} {'perplexity':>19}  label")
    for run in runs:
        results, identity = run.results(), run.identity()
        steps = f"{results.steps:,}" if results else ""
        base, final = (results.base_perplexity, results.final_perplexity) if results else (None, None)
        ppl = f"{_number(base)} -> {_number(final)}" if base is not None else ""
        print(f"{run.name:<48} {run.status():<12} {steps:>7} {ppl:>19}  {identity.label}")
    return 0


def _finished_run(folder: Path) -> RunDir:
    """The run in `folder`; ValueError in plain words when it holds none."""
    run = RunDir(folder)
    if not run.is_run():
        raise ValueError(f"run: {folder} holds no run")
    return run


def _token(args: argparse.Namespace) -> str:
    """The token of --token-file, else HF_TOKEN, else the token `hf auth login` saved; ValueError in plain words
    when the file cannot be read or there is none. Never printed."""
    from huggingface_hub import get_token

    if args.token_file:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"token_file: cannot read {args.token_file} ({error.strerror})") from None
    else:
        token = get_token()  # HF_TOKEN, else the token `hf auth login` saved
    if not token:
        raise ValueError("token: set HF_TOKEN, log in with `hf auth login`, or give --token-file")
    return token


def _push(args: argparse.Namespace) -> int:
    """Upload a finished run to the hub; print the repository's URL (never the token)."""
    print(workspace.push_run(_finished_run(args.run), args.repo, _token(args), private=not args.public))
    return 0


def _deploy_space(args: argparse.Namespace) -> int:
    """Upload the app to a Gradio Space; print its URL (never the token). With --dry-run, print the files that
    would be uploaded, one a line, and upload nothing (on ZeroGPU hardware, a line on stderr says which torch)."""
    if args.dry_run:
        print("\n".join(deploy.dry_run(args.repo, args.source)))
        if deploy.on_zero_gpu(args.hardware):
            print(f"requirements.txt is uploaded with {deploy.ZEROGPU_TORCH} (ZeroGPU's)", file=sys.stderr)
        return 0
    print(deploy.deploy(args.repo, _token(args), args.source, private=args.private, hardware=args.hardware))
    return 0


def _export(args: argparse.Namespace) -> int:
    """Zip a finished run; print the zip's path."""
    print(workspace.zip_run(_finished_run(args.run)))
    return 0


def _number(value: float | None) -> str:
    """A perplexity in a column."""
    return "–" if value is None else f"{value:,.2f}"


def _fill_mask(args: argparse.Namespace) -> int:
    """Print the top guesses for each mask with the text they make, or the service's answer as JSON."""
    targets = tuple(t.strip() for t in args.targets.split(",")) if args.targets else ()
    filled = playground.fill(playground.FillRequest(args.model, args.text, args.top_k, targets=targets))
    if args.json:
        print(json.dumps(dataclasses.asdict(filled), ensure_ascii=False))
        return 0
    for number, guesses in enumerate(filled.guesses, start=1):
        if len(filled.guesses) > 1:
            print(f"mask {number}:")
        for guess in guesses:
            print(f"  {guess.probability:7.2%}  {guess.word:<20}  {guess.text}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    """Print what a run with these options would train on and cost here (as JSON with --json)."""
    launch.end_with_parent()  # the app's previews end with the app
    result = launch.preview_here(train_config(args))
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    left = result.records - result.documents
    if left:
        print(f"{left:,} of the {result.records:,} rows hold no text in {result.text_column!r} and are left out")
    print(
        f"{result.documents:,} documents -> {result.tokens:,} tokens -> {result.train_blocks:,} training and "
        f"{result.eval_blocks:,} held-out blocks of {result.block_size} tokens (text column {result.text_column!r})"
    )
    print(
        f"{result.total_steps:,} steps at {result.seconds_per_step:.2f} s each -> about "
        f"{result.estimated_seconds / 60:.1f} minutes, {result.memory_bytes / 2**30:.1f} GiB of memory"
    )
    print(
        f"words: {result.pieces_per_word:.2f} pieces each on average, {result.whole_word_share:.0%} of them one "
        "piece of this model's vocabulary"
    )
    if result.fit_advice:
        print(result.fit_advice)
    for probe in result.probes:
        print(f"probe: {probe.line()}")
    return 0


def _train_queued(args: argparse.Namespace) -> int:
    """Train a queued run as its identity says (the app's queue runs this in a child process); SIGTERM stops it
    after its current step."""
    with _stop_on_signals() as stop:
        results = launch.train_queued(args.run, stop)
    return 0 if results.status == COMPLETED else EXIT_STOPPED


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """A stop flag that Ctrl-C (SIGINT) and SIGTERM set (the run ends after its current step, with a checkpoint)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _generate(args: argparse.Namespace) -> int:
    """Print the prompt's continuation."""
    print(
        playground.generate(
            playground.GenerateRequest(
                args.model,
                args.prompt,
                args.max_new_tokens,
                args.temperature,
                args.top_p,
                args.seed,
                args.top_k,
                sample=not args.greedy,
            )
        )
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    """Print the device, whether the hub is reachable, the offline defaults and where runs are kept (ValueError for
    a runs folder that cannot hold runs)."""
    online = hosting.is_online()
    print(f"device: {hosting.describe_device()}")
    print(f"hub: {'reachable' if online else 'not reachable: use --model starter --dataset builtin'}")
    print(f"starter model: {hosting.STARTER_DIR if hosting.STARTER_DIR.is_dir() else 'missing (python -m starter)'}")
    storage = hosting.check_runs_folder(runs_root())
    print(f"runs folder: {storage.path}, {storage.where()}")
    return 0


def _escaped(help_text: str) -> str:
    """Help text safe for argparse, which treats '%' as a format character."""
    return help_text.replace("%", "%%")
