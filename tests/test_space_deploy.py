"""Deploying the app to a Gradio Space (`python -m mlm_core deploy-space`) through the stand-in hub: the upload is
exactly the dry run's list and holds every file the app needs and nothing of the developer's (tests/test_space.py
starts the app from those files alone); the Space's README and pinned requirements agree on a Python that ZeroGPU
offers; refusals come in words; and a push with a token that may not create repositories is refused in plain words
(OAuth scopes)."""

from __future__ import annotations

import re
import shlex
import subprocess
from importlib.metadata import PackageNotFoundError, metadata, requires, version

import huggingface_hub
import pytest
from huggingface_hub import SpaceCard
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from mlm_core.runs.export import push_run
from mlm_core.service.deploy import ZEROGPU_TORCH, checked_files, space_files
from mlm_core.system import hub_access

from .conftest import ROOT
from .standin_hub import StandInHub
from .test_hub_path import online, run_cli

# The Python versions a ZeroGPU Space runs, as the hub's docs list them ("Supported versions", Python):
# https://huggingface.co/docs/hub/spaces-zerogpu
ZEROGPU_PYTHONS = ("3.10.13", "3.12.12")
SPACE = "your-name/mlm-studio"  # as the README's commands write it
TOKEN = "hf_DeploysTheSpace0123456789abcdefXYZ"  # not in the hub's scopes: may do everything
NO_CREATE = "hf_SignInWithWriteReposOnly0123456789"  # an OAuth token that may write, not create
WRITES, CONTRIBUTES = "hf_ScopesWriteRepos0123456789abcdef", "hf_ScopesContribute0123456789abcdef"
NEVER_UPLOADED = (
    "tests/",
    ".venv/",
    "runs/",
    ".git/",
    ".github/",
    ".ci/",
    "test-artifacts/",
    ".starter-build/",
    "bench/",
    "starter/",
)


def requires_python_problems(requirements: str, python: str) -> list[str]:
    """What keeps the requirements' pins off `python`: each pinned requirement and, recursively, what the installed
    distributions require on that Python (their markers evaluated for it, extras included), whose installed
    metadata's Requires-Python does not admit it; a pin not installed here or installed at another version is a
    problem too (its metadata would not be the pinned release's). Dependencies not installed here are not checked."""
    target = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python}
    problems, todo = [], []
    for line in requirements.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        pin = Requirement(line)
        if not any(spec.operator == "==" for spec in pin.specifier):
            continue
        try:
            installed = version(pin.name)
        except PackageNotFoundError:
            problems.append(f"{pin.name}: pinned but not installed here")
            continue
        if not pin.specifier.contains(installed, prereleases=True):
            problems.append(f"{pin.name}: {installed} installed, {pin.specifier} pinned")
        todo.append((pin.name, frozenset(pin.extras)))
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            meta = metadata(name)
        except PackageNotFoundError:
            continue
        spec = meta["Requires-Python"]
        if spec and not SpecifierSet(spec).contains(python, prereleases=True):
            problems.append(f"{name} {meta['Version']}: Requires-Python {spec}")
        for text in requires(name) or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({**target, "extra": e}) for e in {"", *extras}):
                todo.append((dep.name, frozenset(dep.extras)))
    return problems


def check_space_python(readme: str, requirements: str) -> str:
    """The README's `python_version`, once its front matter is a Gradio Space's, the version is one ZeroGPU offers
    and every pinned requirement (and what it needs) admits it."""
    data = SpaceCard(readme).data
    assert data.sdk == "gradio" and data.app_file == "app.py", (data.sdk, data.app_file)
    assert data.python_version in ZEROGPU_PYTHONS, data.python_version
    assert requires_python_problems(requirements, data.python_version) == []
    return data.python_version


@pytest.fixture(scope="module")
def hub():
    """A stand-in hub that takes commits, with one OAuth token that may write but not create."""
    hub = StandInHub(accept_commits=True, scopes={NO_CREATE: {"write-repos"}})
    yield hub
    hub.close()


def hosting_commands() -> list[list[str]]:
    """The arguments of each `python -m mlm_core ...` command in the README's "Hosting it as a Space" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Hosting it as a Space\n", 1)[1].split("\n## ", 1)[0]
    return [
        shlex.split(line.split(" #")[0])[3:]
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.startswith("python -m mlm_core ")
    ]


@pytest.fixture(scope="module")
def deployed(hub, tmp_path_factory) -> dict:
    """The README's commands, as written: the dry run's list, then the deploy of this project to SPACE with the
    token in HF_TOKEN."""
    work = tmp_path_factory.mktemp("deploy")
    dry_run, deploy = hosting_commands()
    assert (dry_run, deploy) == (["deploy-space", SPACE, "--dry-run"], ["deploy-space", SPACE])
    dry = run_cli(dry_run, online(hub, work / "hf", HF_TOKEN=""))
    assert dry.returncode == 0, dry.stderr[-2000:]
    done = run_cli(deploy, online(hub, work / "hf", HF_TOKEN=TOKEN))
    return {"listed": dry.stdout.splitlines(), "done": done, "files": hub.files("space", SPACE)}


def test_deploy_uploads_exactly_the_dry_runs_list_to_a_gradio_space_and_prints_its_url(deployed, hub):
    done = deployed["done"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"{hub.url}/spaces/{SPACE}"
    assert TOKEN not in done.stdout + done.stderr
    assert hub.repos["space", SPACE].sdk == "gradio" and hub.repos["space", SPACE].hardware is None
    assert deployed["listed"] == space_files(ROOT)
    assert sorted(deployed["files"]) == deployed["listed"]
    commits = [c for c in hub.commits if c.repo_id == SPACE]
    assert commits and all(c.authorization == f"Bearer {TOKEN}" for c in commits)
    assert sorted({path for c in commits for path in c.paths}) == deployed["listed"]


def test_the_space_holds_every_file_the_app_needs_and_nothing_of_the_developers(deployed):
    files = deployed["files"]
    needed = {
        "app.py",
        "requirements.txt",
        "README.md",
        ".gitattributes",
        *(p.relative_to(ROOT).as_posix() for top in ("mlm_core", "studio") for p in (ROOT / top).rglob("*.py")),
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "assets" / "starter-mlm").iterdir() if p.is_file()),
    }
    assert needed <= set(files), sorted(needed - set(files))
    assert not [p for p in files if p.startswith(NEVER_UPLOADED) or "__pycache__" in p or p.endswith(".pyc")]
    assert all(files[p] == (ROOT / p).read_bytes() for p in files)  # binaries byte for byte


def test_the_uploaded_readme_and_requirements_agree_on_a_python_zerogpu_offers(deployed):
    files = deployed["files"]
    check_space_python(files["README.md"].decode(), files["requirements.txt"].decode())


def test_the_repos_own_readme_and_requirements_agree_on_a_python_zerogpu_offers():
    python = check_space_python(
        (ROOT / "README.md").read_text(encoding="utf-8"), (ROOT / "requirements.txt").read_text(encoding="utf-8")
    )
    assert requires_python_problems("transformers==" + version("transformers"), "3.10.13")  # the check can fail
    assert python == "3.12.12"


def test_the_upload_list_leaves_out_what_a_developer_has_lying_around(tmp_path):
    kept = [
        "README.md",
        "app.py",
        "assets/starter-mlm/model.safetensors",
        "docs/bench/x.md",
        "mlm_core/__init__.py",
        "mlm_core/runs/run_dir.py",
        "requirements.txt",
        "studio/page.py",
    ]
    left = [
        "mlm_core/__pycache__/x.cpython-311.pyc",
        "studio/old.pyc",
        "runs/r/results.json",
        ".venv/bin/python",
        "tests/test_x.py",
        ".ci/run",
        ".github/workflows/ci.yml",
        "test-artifacts/a.png",
        ".env",
        "mlm_core/.env",
        "app.log",
        "docs/bench/run.log",
        "mlm_core/.data-cache/x",
        ".starter-build/c.txt",
        ".git/HEAD",
        "notes.txt",
        "pytest.ini",
        "studio/.env.local",
        "assets/.netrc",
        "docs/x/.env.production",
        "bench/report.py",
        "starter/recipe.py",
    ]
    for path in kept + left:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    assert space_files(tmp_path) == sorted(kept)
    (tmp_path / "README.md").write_text("---\nsdk: gradio\napp_file: app.py\n---\n# x\n")
    with pytest.raises(ValueError, match="front matter needs python_version"):
        checked_files(tmp_path)
    (tmp_path / "README.md").write_text("---\nsdk: docker\napp_file: app.py\npython_version: '3.12'\n---\n")
    with pytest.raises(ValueError, match="needs sdk: gradio, not docker"):
        checked_files(tmp_path)
    (tmp_path / "README.md").write_text("---\nsdk: gradio\napp_file: main.py\npython_version: '3.12'\n---\n")
    with pytest.raises(ValueError, match="app_file main.py is not among the files"):
        checked_files(tmp_path)


def test_in_a_git_checkout_only_tracked_files_go_and_an_lfs_pointer_is_refused(tmp_path):
    readme = "---\nsdk: gradio\napp_file: app.py\npython_version: '3.12.12'\n---\n# x\n"
    files = {
        "README.md": readme,
        "app.py": "x",
        "requirements.txt": "x",
        "mlm_core/__init__.py": "x",
        "assets/starter-mlm/model.safetensors": "weights",
    }
    for path, text in {**files, "mlm_core/hf-token.txt": "hf_secret", "studio/new.py": "x"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", *files], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    assert checked_files(tmp_path) == sorted(files)  # the untracked token and module stay home
    (tmp_path / "assets/starter-mlm/model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
    )
    with pytest.raises(
        ValueError, match="model.safetensors is a Git LFS pointer, not the file itself; run `git lfs pull` first"
    ):
        checked_files(tmp_path)


def test_a_second_deploy_removes_what_the_app_no_longer_has(deployed, hub, tmp_path):
    hub.repos["space", SPACE].commit({**hub.files("space", SPACE), "studio/removed_since.py": b"x"})
    again = run_cli(hosting_commands()[1], online(hub, tmp_path / "hf", HF_TOKEN=TOKEN))
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(hub.files("space", SPACE)) == deployed["listed"]


@pytest.mark.parametrize(
    "args, token, words",
    [
        ([SPACE], None, "token: set HF_TOKEN, log in with `hf auth login`, or give --token-file"),
        (["not-owner-slash-name"], TOKEN, "repo_id: use the form 'owner/space-name'"),
        (
            ["someone/other-space"],
            NO_CREATE,
            "may not create the Space someone/other-space (a token needs write access, "
            "a Hugging Face sign-in the contribute-repos scope)",
        ),
    ],
)
def test_deploy_is_refused_in_words(hub, tmp_path, args, token, words):
    command = ["deploy-space", *args]
    if token:
        (tmp_path / "token").write_text(token)
        command += ["--token-file", str(tmp_path / "token")]
    refused = run_cli(command, online(hub, tmp_path / "hf", HF_TOKEN=""))
    assert refused.returncode == 2 and words in refused.stderr, refused.stderr[-2000:]
    assert len(refused.stderr.strip().splitlines()) == 1 and not (token and token in refused.stdout + refused.stderr)
    assert ("space", "someone/other-space") not in hub.repos


@pytest.fixture
def scoped(monkeypatch):
    """This process online against a stand-in hub whose tokens have OAuth scopes."""
    hub = StandInHub(
        accept_commits=True,
        scopes={
            WRITES: {"write-repos"},
            CONTRIBUTES: {"write-repos", "contribute-repos"},
            "hf_OnlyContributes0123456789abcdefg": {"contribute-repos"},
        },
    )
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hub_access, "_cache", {})
    yield hub
    hub.close()


def test_a_push_with_a_token_that_may_not_create_repositories_is_refused_in_plain_words(finished_run, scoped):
    with pytest.raises(ValueError) as refused:
        push_run(finished_run, "visitor/new-model", token=WRITES)
    words = str(refused.value)
    assert words.startswith("repo_id: this token or sign-in may not create repositories"), words
    assert "contribute-repos scope" in words and "create the repository on the hub first and push again" in words
    assert WRITES not in words and not scoped.commits and ("model", "visitor/new-model") not in scoped.repos

    assert "visitor/new-model" in push_run(finished_run, "visitor/new-model", token=CONTRIBUTES)
    assert [c.authorization for c in scoped.commits] == [f"Bearer {CONTRIBUTES}"]
    assert "README.md" in scoped.files("model", "visitor/new-model")
    assert "visitor/new-model" in push_run(finished_run, "visitor/new-model", token=WRITES)  # it exists now

    only = "hf_OnlyContributes0123456789abcdefg"  # contribute-repos writes only the repositories it created
    assert "visitor/its-own" in push_run(finished_run, "visitor/its-own", token=only)
    scoped.add_repo("model", "visitor/someone-elses", {".gitattributes": b""})
    with pytest.raises(ValueError, match=r"the hub refused the upload \(HfHubHTTPError\)"):
        push_run(finished_run, "visitor/someone-elses", token=only)


@pytest.mark.slow  # three deploys through the CLI
def test_a_space_on_zerogpu_gets_a_torch_zerogpu_lists_that_every_requirement_admits(hub, tmp_path):
    env = online(hub, tmp_path / "hf", HF_TOKEN=TOKEN)
    dry = run_cli(["deploy-space", "your-name/on-zerogpu", "--hardware", "zero-a10g", "--dry-run"], env)
    assert dry.returncode == 0 and f"uploaded with {ZEROGPU_TORCH}" in dry.stderr, dry.stderr[-2000:]
    done = run_cli(["deploy-space", "your-name/on-zerogpu", "--hardware", "zero-a10g"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert hub.repos["space", "your-name/on-zerogpu"].hardware == "zero-a10g"
    again = run_cli(["deploy-space", "your-name/on-zerogpu"], env)  # the Space says its hardware itself
    assert again.returncode == 0, again.stderr[-2000:]
    files = hub.files("space", "your-name/on-zerogpu")
    ours = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    uploaded = files["requirements.txt"].decode()
    assert uploaded == ours.replace("torch==2.13.0", ZEROGPU_TORCH, 1) != ours  # only torch changes
    wanted = Requirement(ZEROGPU_TORCH).specifier
    version_there = next(iter(wanted)).version
    for line in uploaded.splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("torch"):
            pinned = Requirement(line)
            for needed in map(Requirement, requires(pinned.name) or []):
                installed = not needed.marker or any(
                    needed.marker.evaluate({"extra": extra}) for extra in ("", *pinned.extras)
                )  # what installing the pin brings, extras asked for included
                if installed and canonicalize_name(needed.name) == "torch":
                    assert needed.specifier.contains(version_there), (line, str(needed))
