"""`python -m mlm_core deploy-space OWNER/NAME`: create (or update) a Gradio Space on the Hugging Face hub and upload
what the app needs to run there, binaries included, in one commit over HTTP (`huggingface_hub.create_commit`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, SpaceCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

from mlm_core.system import hub_access

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding app.py
# What a Space of the app holds, as huggingface_hub's patterns (fnmatch, "*" spans folders; "x/" is everything under
# x): the allow list, then what is never uploaded even where the allow list would take it.
UPLOAD = ("app.py", "README.md", "requirements.txt", ".gitattributes", "mlm_core/", "studio/", "assets/", "docs/")
NEVER = (
    "*__pycache__/*",
    "*.pyc",
    "*.log",
    ".env*",
    "*/.env*",
    "*.netrc",
    "*.pem",
    ".venv/",
    "*/.venv/*",
    ".git/",
    "*/.git/*",
    ".data-cache/",
    "*/.data-cache/*",
    "runs/",
    "tests/",
    ".ci/",
    ".github/",
    "test-artifacts/",
    ".starter-build/",
)
FRONT_MATTER = ("sdk", "app_file", "python_version")  # what a Space's README must say (besides sdk: gradio)
COMMIT_MESSAGE = "Deploy MLM Studio"
# ZeroGPU installs the torch releases it lists, up to 2.11 (https://huggingface.co/docs/hub/spaces-zerogpu); every
# other requirement admits it (transformers needs torch >= 2.6, accelerate >= 2.0). requirements.txt pins 2.13.0,
# which the project's CPU machines install from local disk: a Space on ZeroGPU hardware gets this pin instead.
ZEROGPU_TORCH = "torch==2.11.0"
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"  # what a clone without `git lfs pull` holds


def space_files(root: Path = PROJECT_ROOT) -> list[str]:
    """The files of `root` a deploy uploads, as relative posix paths, sorted: in a git checkout the files git
    tracks (an untracked token or `.env.local` stays home), else every file; those under UPLOAD, less NEVER and
    huggingface_hub's default ignores."""
    root = Path(root).resolve()
    tracked = _tracked(root)
    if tracked is None:
        found = set()
        for pattern in UPLOAD:  # only the allowed files and folders are walked (never .venv)
            top = root / pattern.rstrip("/")
            found.update([top] if top.is_file() else (p for p in top.glob("**/*") if p.is_file()))
        paths = sorted(p.relative_to(root).as_posix() for p in found)
    else:
        paths = sorted(path for path in tracked if (root / path).is_file())
    return list(
        filter_repo_objects(paths, allow_patterns=list(UPLOAD), ignore_patterns=[*NEVER, *DEFAULT_IGNORE_PATTERNS])
    )


def _space_hardware(api: HfApi, repo_id: str) -> str | None:
    """The hardware the Space asks for (or runs on), as the hub says; None when it does not say."""
    try:
        runtime = api.get_space_runtime(repo_id)
    except Exception:  # noqa: BLE001 - a hub without the runtime route, a Space still building: the flag decides
        return None
    return runtime.requested_hardware or runtime.hardware


def _content(path: str, root: Path, hardware: str | None) -> Path | bytes:
    """What a Space on `hardware` gets at `path`: the file, or its requirements for that hardware."""
    return requirements_for(hardware, root) if path == "requirements.txt" else Path(root) / path


def _tracked(root: Path) -> list[str] | None:
    """The paths git tracks under `root`, relative to it; None when `root` is not in a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [path for path in listed.decode("utf-8", "surrogateescape").split("\0") if path]


def checked_files(root: Path = PROJECT_ROOT) -> list[str]:
    """`space_files(root)` once its README.md is a Space card with `sdk: gradio`, an `app_file` that is among the
    files, and a `python_version`, and no file is a Git LFS pointer. Raises ValueError in plain words otherwise."""
    readme = Path(root) / "README.md"
    if not readme.is_file():
        raise ValueError(f"from: {root} has no README.md, whose front matter configures the Space")
    try:
        data = SpaceCard.load(readme).data
    except Exception as error:  # a YAML error, front matter that is not a mapping
        raise ValueError(
            f"README.md: its front matter does not parse as a Space's ({type(error).__name__}: {error})".splitlines()[0]
        ) from None
    missing = [key for key in FRONT_MATTER if not getattr(data, key, None)]
    if missing:
        raise ValueError(
            f"README.md: the Space's front matter needs {', '.join(missing)} (the Space is built from them)"
        )
    if data.sdk != "gradio":
        raise ValueError(f"README.md: the app is a Gradio app, so its front matter needs sdk: gradio, not {data.sdk}")
    files = space_files(root)
    if data.app_file not in files:
        raise ValueError(f"README.md: its app_file {data.app_file} is not among the files to upload")
    for path in files:
        with (Path(root) / path).open("rb") as file:
            if file.read(len(LFS_POINTER)) == LFS_POINTER:
                raise ValueError(f"from: {path} is a Git LFS pointer, not the file itself; run `git lfs pull` first")
    return files


def on_zero_gpu(hardware: str | None) -> bool:
    """Whether `hardware` is ZeroGPU's (the hub names its flavors `zero-*`, e.g. zero-a10g)."""
    return bool(hardware) and hardware.startswith("zero-")


def requirements_for(hardware: str | None, root: Path = PROJECT_ROOT) -> bytes:
    """The requirements.txt a Space on `hardware` gets: the project's, with torch pinned to ZEROGPU_TORCH on
    ZeroGPU."""
    text = (Path(root) / "requirements.txt").read_text(encoding="utf-8")
    if on_zero_gpu(hardware):
        text = re.sub(r"^torch==\S+", ZEROGPU_TORCH, text, count=1, flags=re.M)
    return text.encode("utf-8")


def dry_run(repo_id: str, root: Path = PROJECT_ROOT) -> list[str]:
    """The files `deploy(repo_id, ..., root)` would upload; ValueError in plain words as `deploy` for the Space's
    name and the files."""
    hub_access.check_hub_id(repo_id, "repo_id", "use the form 'owner/space-name'", namespace=True)
    return checked_files(root)


def deploy(
    repo_id: str, token: str, root: Path = PROJECT_ROOT, private: bool = False, hardware: str | None = None
) -> str:
    """Create the Gradio Space `repo_id` (kept as it is if it exists; on `hardware` when given), make
    `checked_files(root)` its files in one commit (uploading them, deleting any other), and return its URL. The
    token is not kept.

    Raises ValueError in plain words when `repo_id` is not 'owner/name', README.md is not a Gradio Space's, no
    token is given, the hub is not reachable, the token may not create the Space (HTTP 401/403), the hub asks for
    a paid plan (HTTP 402), or the hub refuses the upload (naming only the kind of error, never the token).
    """
    hub_access.check_hub_id(repo_id, "repo_id", "use the form 'owner/space-name'", namespace=True)
    files = checked_files(root)
    if not token:
        raise ValueError("token: set HF_TOKEN, log in with `hf auth login`, or give --token-file")
    if not hub_access.is_online():
        raise ValueError("repo_id: the Hugging Face hub is not reachable from here")
    api, url = HfApi(token=token), None
    try:
        url = api.create_repo(
            repo_id, repo_type="space", space_sdk="gradio", exist_ok=True, private=private, space_hardware=hardware
        )
        hardware = _space_hardware(api, repo_id) or hardware  # an existing Space keeps its own
        stale = set(api.list_repo_files(repo_id, repo_type="space")) - set(files)  # e.g. a file since removed
        api.create_commit(
            repo_id,
            repo_type="space",
            commit_message=COMMIT_MESSAGE,
            operations=[
                *(CommitOperationAdd(path, _content(path, root, hardware)) for path in files),
                *(CommitOperationDelete(path) for path in sorted(stale)),
            ],
        )
    except Exception as error:  # hub errors can echo request headers: report the kind only, never the token
        status = getattr(getattr(error, "response", None), "status_code", 0) if isinstance(error, HfHubHTTPError) else 0
        if url is None and status in (401, 403):
            raise ValueError(
                f"repo_id: this token or sign-in may not create the Space {repo_id} (a token needs "
                "write access, a Hugging Face sign-in the contribute-repos scope); or create the Space "
                "on the hub first and deploy again"
            ) from None
        if url is None and status == 402:
            raise ValueError(
                f"repo_id: the hub asks for a paid plan to create {repo_id} on "
                f"{hardware or 'its default hardware'}; a free account may create ZeroGPU Spaces "
                "(--hardware zero-a10g), or create the Space on the hub first"
            ) from None
        raise ValueError(
            f"repo_id: the hub refused the deploy ({type(error).__name__}); check the name and that the token may write"
        ) from None
    return str(url)
