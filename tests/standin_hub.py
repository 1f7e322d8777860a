"""A stand-in for the Hugging Face hub on 127.0.0.1 (the app reaches it through HF_ENDPOINT).

It records every request and the token it carried, serves the model, dataset and Space repositories it is given
in the hub's layout (enough for `huggingface_hub`, `transformers.from_pretrained` and `datasets.load_dataset`,
streaming included), and creates repositories (a Space's `sdk` and `hardware` are recorded on its `Repo`). Told to
(`accept_commits=True`), it stores what `upload_folder` pushes; else a push is refused, as by a hub that lets nobody
write. Plain HTTP only: no LFS, no Xet.

Token scopes (`scopes`: token -> its OAuth scopes), as the hub documents them for a Hugging Face sign-in: a token
not in `scopes` may do everything (today's behaviour). A token in it may create a repository only with
`contribute-repos` or `manage-repos` (else the hub's 403 for a forbidden create), and commit to a repository only
with `write-repos` or `manage-repos`, or with `contribute-repos` to a repository that this same token created.

The routes, as `huggingface_hub` calls them ({kinds} is models, datasets or spaces):
    GET  /api/{kinds}/{repo}[/revision/{rev}]                repo_info: sha and siblings
    GET  /api/{kinds}/{repo}/tree/{rev}[/{path}]             list_repo_tree (`recursive=true|false`)
    POST /api/{kinds}/{repo}/paths-info/{rev}                get_paths_info (form field `paths`, repeated)
    HEAD|GET /{repo}/resolve/{rev}/{path}                    a model's file (GET takes a `Range`)
    HEAD|GET /{datasets|spaces}/{repo}/resolve/{rev}/{path}  a dataset's or a Space's file
    GET  /api/spaces/{repo}/runtime                          get_space_runtime: the hardware create_repo asked for
    POST /api/repos/create                                   create_repo (`type` model, dataset or space)
    POST /api/validate-yaml                                  a README's metadata (upload_folder asks first)
    POST /api/{kinds}/{repo}/preupload/{rev}                 every file "regular" (base64 in the commit)
    POST /api/{kinds}/{repo}/commit/{rev}                    create_commit (ndjson: header, file, deletedFile)
Anything else is a 404.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DATE = "2026-01-01T00:00:00.000Z"  # every commit's date: nothing here reads it
_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_API = rf"/api/(?P<kind>model|dataset|space)s/{_REPO}"
# (method, path pattern, name of the StandInHub method that answers); the first match wins.
ROUTES = [
    ("GET", rf"{_API}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("GET", rf"/api/spaces/{_REPO}/runtime", "space_runtime"),
    ("GET", rf"{_API}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("POST", rf"{_API}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("POST", rf"{_API}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"{_API}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET|HEAD", rf"/(?:(?P<kind>dataset|space)s/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


@dataclass
class Reply:
    """One HTTP answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(value, status: int = 200, **headers: str) -> Reply:
    """A JSON answer."""
    return Reply(status, json.dumps(value).encode(), {"Content-Type": "application/json", **headers})


def error_reply(status: int, code: str, message: str, **headers: str) -> Reply:
    """An error as the hub words it: `X-Error-Code` is what `huggingface_hub` turns into its exception types."""
    return json_reply({"error": message}, status, **{"X-Error-Code": code, "X-Error-Message": message, **headers})


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content (what the hub calls a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One repository: its files at every commit it has had (the newest is `main`)."""

    kind: str  # "model", "dataset" or "space"
    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> path -> content
    head: str = ""
    sdk: str | None = None  # a Space's, as create_repo asked for it
    hardware: str | None = None  # a Space's, as create_repo asked for it (None: not asked)
    created_by: str = ""  # the token that created it through create_repo ("" for add_repo's)

    def commit(self, files: dict[str, bytes]) -> str:
        """Make `files` the content of `main`; the new commit's sha."""
        digest = hashlib.sha1(self.head.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_id(files[path]).encode())
        self.head = digest.hexdigest()
        self.commits[self.head] = dict(files)
        return self.head

    def at(self, revision: str | None) -> tuple[str, dict[str, bytes]] | None:
        """(sha, files) of a revision: 'main' (or none), or the sha of a commit; None for an unknown one."""
        sha = self.head if revision in (None, "main") else revision
        return (sha, self.commits[sha]) if sha in self.commits else None


def entry(path: str, files: dict[str, bytes], sha: str) -> dict | None:
    """The tree entry of a path (a file or a folder) as the hub lists it; None when the path is not there."""
    commit = {"id": sha, "title": "Upload", "date": DATE}
    if path in files:
        data = files[path]
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data), "lastCommit": commit}
    if any(name.startswith(path + "/") for name in files) or path == "":
        return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "lastCommit": commit}
    return None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) bytes of a `Range: bytes=a-b` header (also `a-` and `-n`); None for no or another header."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        return max(0, size - int(last)), size - 1
    return int(first), min(size - 1, int(last)) if last else size - 1


def metadata_errors(readme: str, models: set[str]) -> list[str]:
    """What the hub would refuse in a README's YAML front matter: YAML that does not parse or is not a mapping, a
    `base_model` that is not one of `models`."""
    import yaml

    match = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    try:
        metadata = yaml.safe_load(match.group(1)) if match else {}
    except yaml.YAMLError as error:
        return [f"invalid YAML: {error}"]
    if not isinstance(metadata, dict):
        return ["the metadata is not a mapping"]
    bases = metadata.get("base_model") or []
    return [
        f'"base_model" {base!r} is not a model on the hub'
        for base in ([bases] if isinstance(bases, str) else bases)
        if base not in models
    ]


@dataclass
class Commit:
    """One commit pushed to the stand-in: where, with which Authorization header, which paths."""

    repo_id: str
    authorization: str
    paths: list[str]


CREATE_SCOPES = {"contribute-repos", "manage-repos"}  # an OAuth token may create a repository with one of these
WRITE_SCOPES = {"write-repos", "manage-repos"}  # ... and write to any repository it can see with one of these


def bearer(headers) -> str:
    """The token of a request's `Authorization: Bearer ...` header ("" for none)."""
    return (headers.get("Authorization") or "").removeprefix("Bearer ").strip()


class StandInHub:
    """A hub on 127.0.0.1 serving `add_repo`'s repositories; records (method, path, Authorization header) of every
    request in `requests` and every commit in `commits`. `scopes` limits what the tokens in it may do (see the
    module's docstring)."""

    def __init__(self, accept_commits: bool = False, scopes: dict[str, set[str]] | None = None):
        self.requests: list[tuple[str, str, str]] = []
        self.commits: list[Commit] = []
        self.repos: dict[tuple[str, str], Repo] = {}
        self.accept_commits = accept_commits
        self.scopes: dict[str, set[str]] = dict(scopes or {})
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_repo(self, kind: str, repo_id: str, files: dict[str, bytes]) -> Repo:
        """Serve a repository ("model", "dataset" or "space") holding `files` (path in the repo -> content)."""
        repo = self.repos[kind, repo_id] = Repo(kind, repo_id)
        repo.commit(files)
        return repo

    def add_folder(self, kind: str, repo_id: str, folder: Path) -> Repo:
        """Serve a repository holding every file under `folder`."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_repo(kind, repo_id, files)

    def files(self, kind: str, repo_id: str) -> dict[str, bytes]:
        """The files of a repository's `main` (empty when there is no such repository)."""
        repo = self.repos.get((kind, repo_id))
        return dict(repo.commits[repo.head]) if repo else {}

    def tokens(self) -> set[str]:
        """Every Authorization header seen so far."""
        return {auth for _, _, auth in self.requests}

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    # --- answering one request -------------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers, body: bytes) -> Reply:
        """The reply to one request: recorded, then routed by ROUTES."""
        self.requests.append((method, target, headers.get("Authorization") or ""))
        url = urlsplit(target)
        path, query = unquote(url.path), parse_qs(url.query)
        for methods, pattern, name in ROUTES:
            match = re.fullmatch(pattern, path)
            if method in methods.split("|") and match:
                args = match.groupdict()
                args["kind"] = args.get("kind") or "model"
                with self._lock:
                    try:
                        return getattr(self, name)(headers=headers, body=body, query=query, **args)
                    except Exception as error:  # a request the stand-in cannot parse: say so, as a hub would
                        return error_reply(400, "BadRequest", f"{type(error).__name__}: {error}")
        return json_reply({"error": "not here"}, 404)

    def _revision(self, kind: str, repo: str, rev: str | None) -> tuple[Repo, str, dict[str, bytes]] | Reply:
        """(repo, sha, files) at a revision, or the hub's 404 for an unknown repository or revision."""
        found = self.repos.get((kind, repo))
        if found is None:
            return error_reply(404, "RepoNotFound", "Repository not found")
        at = found.at(rev)
        if at is None:
            return error_reply(404, "RevisionNotFound", "Invalid rev id", **{"X-Repo-Commit": found.head})
        return (found, *at)

    def _writable(self, kind: str, repo: str, rev: str, headers) -> tuple[Repo, str, dict[str, bytes]] | Reply:
        """As `_revision`, and a 403 for an existing repository when this hub takes no commits or the request's
        token may not write to it (its `scopes`)."""
        found = self._revision(kind, repo, rev)
        if isinstance(found, Reply):
            return found
        if not self.accept_commits:
            return error_reply(403, "Forbidden", "This hub takes no commits")
        token = bearer(headers)
        scopes = self.scopes.get(token)
        if scopes is not None and not (
            scopes & WRITE_SCOPES or ("contribute-repos" in scopes and found[0].created_by == token)
        ):
            return error_reply(403, "Forbidden", f"You don't have the rights to write to the {kind} {repo}")
        return found

    def space_runtime(self, repo: str, **_) -> Reply:
        """`get_space_runtime`: a Space still building on the hardware it was created for (none asked: the hub's
        free CPU)."""
        space = self.repos.get(("space", repo))
        if space is None:
            return Reply(404, b"Repository not found")
        return json_reply(
            {"stage": "BUILDING", "hardware": {"current": None, "requested": space.hardware or "cpu-basic"}}
        )

    def repo_info(self, kind: str, repo: str, rev: str | None = None, **_) -> Reply:
        """`model_info` / `dataset_info` / `space_info`: the commit sha and the files (siblings); a Space's sdk."""
        found = self._revision(kind, repo, rev)
        if isinstance(found, Reply):
            return found
        target, sha, files = found
        space = {"sdk": target.sdk} if kind == "space" else {}
        return json_reply(
            {
                "id": repo,
                "_id": repo,
                "author": repo.split("/")[0],
                "sha": sha,
                "private": False,
                "gated": False,
                "disabled": False,
                "lastModified": DATE,
                "createdAt": DATE,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "siblings": [{"rfilename": name} for name in sorted(files)],
                **space,
            }
        )

    def tree(self, kind: str, repo: str, rev: str, query: dict, path: str | None = None, **_) -> Reply:
        """`list_repo_tree`: the entries under a folder, its direct children or (`recursive`) all of them."""
        found = self._revision(kind, repo, rev)
        if isinstance(found, Reply):
            return found
        _, sha, files = found
        folder = (path or "").strip("/")
        if entry(folder, files, sha) is None or folder in files:
            return error_reply(404, "EntryNotFound", f"{folder} does not exist", **{"X-Repo-Commit": sha})
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{folder}/" if folder else ""
        paths = set()
        for name in files:
            if name.startswith(prefix):
                parts = name[len(prefix) :].split("/")
                depth = range(1, len(parts) + 1) if recursive else [1]
                paths.update(prefix + "/".join(parts[:n]) for n in depth)
        return json_reply([entry(p, files, sha) for p in sorted(paths)])

    def paths_info(self, kind: str, repo: str, rev: str, body: bytes, **_) -> Reply:
        """`get_paths_info`: the entries of the paths asked for that exist."""
        found = self._revision(kind, repo, rev)
        if isinstance(found, Reply):
            return found
        _, sha, files = found
        asked = parse_qs(body.decode()).get("paths", [])
        return json_reply([e for p in asked if (e := entry(p.strip("/"), files, sha)) is not None])

    def resolve(self, kind: str, repo: str, rev: str, path: str, headers, **_) -> Reply:
        """A file's bytes (a `Range` of them on request), with the headers `hf_hub_download` needs: `X-Repo-Commit`,
        `ETag` and the length."""
        found = self._revision(kind, repo, rev)
        if isinstance(found, Reply):
            return found
        _, sha, files = found
        if path not in files:
            return error_reply(404, "EntryNotFound", f"{path} does not exist", **{"X-Repo-Commit": sha})
        data = files[path]
        info = {
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_id(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        wanted = byte_range(headers.get("Range"), len(data))
        if wanted is None:
            return Reply(200, data, info)
        first, last = wanted
        return Reply(206, data[first : last + 1], {**info, "Content-Range": f"bytes {first}-{last}/{len(data)}"})

    def create_repo(self, body: bytes, headers, **_) -> Reply:
        """`create_repo`: answered; the repository is made only where commits are accepted (409 if it exists), and
        refused (403) to a token whose `scopes` hold neither `contribute-repos` nor `manage-repos`."""
        asked = json.loads(body or b"{}")
        repo_id = "/".join(part for part in (asked.get("organization"), asked.get("name")) if part)
        kind = asked.get("type") or "model"
        url = f"{self.url}/{repo_id}" if kind == "model" else f"{self.url}/{kind}s/{repo_id}"
        token = bearer(headers)
        scopes = self.scopes.get(token)
        if scopes is not None and not scopes & CREATE_SCOPES:
            namespace = asked.get("organization") or repo_id.split("/")[0]
            return error_reply(
                403, "Forbidden", f'You don\'t have the rights to create a {kind} under the namespace "{namespace}"'
            )
        if self.accept_commits and (kind, repo_id) in self.repos:  # the hub's 409 names the repository too
            return json_reply({"error": f"You already created this {kind} repo", "url": url}, 409)
        if self.accept_commits:
            repo = self.add_repo(kind, repo_id, {".gitattributes": b""})
            repo.sdk, repo.hardware, repo.created_by = asked.get("sdk"), asked.get("hardware"), token
        return json_reply({"url": url, "name": repo_id})

    def validate_yaml(self, body: bytes, **_) -> Reply:
        """A README's metadata, checked as the hub does before a push (`metadata_errors`); 400 with the errors."""
        models = {repo_id for kind, repo_id in self.repos if kind == "model"}
        errors = metadata_errors(json.loads(body)["content"], models)
        return json_reply({"errors": [{"message": e} for e in errors], "warnings": []}, 400 if errors else 200)

    def preupload(self, kind: str, repo: str, rev: str, body: bytes, headers, **_) -> Reply:
        """Every file is uploaded "regular" (its content in the commit itself); `oid` of a file already there."""
        found = self._writable(kind, repo, rev, headers)
        if isinstance(found, Reply):
            return found
        _, _, files = found
        asked = json.loads(body)["files"]
        return json_reply(
            {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_blob_id(files[f["path"]]) if f["path"] in files else None,
                    }
                    for f in asked
                ]
            }
        )

    def commit(self, kind: str, repo: str, rev: str, body: bytes, headers, **_) -> Reply:
        """`create_commit`: apply the ndjson operations (regular files, deletions) as a new commit of `main`."""
        found = self._writable(kind, repo, rev, headers)
        if isinstance(found, Reply):
            return found
        target, _, files = found
        files, changed = dict(files), []
        for item in map(json.loads, body.decode().splitlines()):
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key != "header":  # lfsFile, deletedFolder, copies: not served here
                return error_reply(400, "BadRequest", f"{key} is not supported by the stand-in")
            if key != "header":
                changed.append(value["path"])
        sha = target.commit(files)
        self.commits.append(Commit(repo, headers.get("Authorization") or "", changed))
        prefix = self.url if kind == "model" else f"{self.url}/{kind}s"
        return json_reply({"commitUrl": f"{prefix}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})


def _handler(hub: StandInHub) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a server answering through `hub.answer`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as clients of the hub expect

        def _answer(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reply = hub.answer(self.command, self.path, self.headers, body)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

        def log_message(self, *args):
            pass

    return Handler
