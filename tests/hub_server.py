"""A small in-memory Hugging Face Hub for tests: the HTTP endpoints the real ``huggingface_hub`` client calls.

Served on 127.0.0.1 by a threaded ``http.server``; point a client at it with ``HF_ENDPOINT=server.url``. It
keeps git-like state per repo (branches pointing at commits, each commit a full file snapshot) and answers with
the JSON shapes, headers and error codes of huggingface.co (``X-Error-Code``, ``X-Repo-Commit``, ``ETag``...):

- ``POST /api/repos/create`` (needs a valid token; 409 if the repo exists)
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (repo info)
- ``POST /api/validate-yaml`` (the README front matter check before a commit: the YAML, ``base_model`` a model
  id and not a path, ``model-index`` entries with results; a commit that writes a README.md gets the same check)
- ``POST /api/models/{repo}/preupload/{rev}`` (answers ``uploadMode: regular``, so the client never takes the LFS
  path) and ``POST /api/models/{repo}/commit/{rev}`` (NDJSON, base64 inline files, deletions)
- ``POST /api/models/{repo}/branch/{branch}`` (create a branch)
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (list files, ``recursive``)
- ``GET /api/models/{repo}/refs`` (the branches; no tags)
- ``GET``/``HEAD /{repo}/resolve/{rev}/{path}``: small files directly (``ETag`` = git blob id); ``*.safetensors``
  the way the Hub serves LFS files: a 302 to a CDN URL (``http://localhost:{port}/cdn/{sha256}``, another host
  name for the client) with ``X-Linked-Etag`` and ``X-Linked-Size``

Auth: ``Authorization: Bearer <token>``; tokens in ``tokens`` are valid, any other is refused (401 "Invalid
credentials"). Writes need a valid token; reads of a private repo without one get 401 ``RepoNotFound``, as on the
Hub. Every request is recorded in ``requests`` as ``(method, route)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

INITIAL_FILES = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}


#: A Hub model id, as the Hub checks ``base_model``: ``name`` or ``namespace/name``, no path.
MODEL_ID = re.compile(r"^(?:[\w\-.]{1,96}/)?[\w\-.]{1,96}$")


def card_errors(content: str) -> list[str]:
    """What the Hub refuses in a model card's front matter: unreadable YAML, a ``base_model`` that is not a model
    id (a local path, say), a ``model-index`` entry without results."""
    if not content.startswith("---"):
        return []
    try:
        front = yaml.safe_load(content.split("---", 2)[1]) or {}
    except yaml.YAMLError as error:
        return [str(error)]
    errors = []
    bases = front.get("base_model")
    for base in [bases] if isinstance(bases, str) else bases or []:
        if not isinstance(base, str) or not MODEL_ID.match(base) or ".." in base or base.startswith((".", "-")):
            errors.append(f'"base_model" with value "{base}" is not valid. Use a model id from https://hf.co/models.')
    for entry in front.get("model-index") or []:
        if not entry.get("name") or not entry.get("results"):
            errors.append('"model-index[0]" must have a "name" and "results".')
    return errors


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    message: str
    parent: str | None
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def commit(self, files: dict[str, bytes], message: str, parent: str | None) -> Commit:
        date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # the Hub's format
        digest = hashlib.sha1(f"{self.repo_id}\n{parent}\n{message}\n{len(self.commits)}".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{git_blob_id(files[path])}\n".encode())
        commit = Commit(digest.hexdigest(), dict(files), message, parent, date)
        self.commits[commit.oid] = commit
        return commit

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class FakeHub:
    """The Hub's state and request handling; :meth:`start` serves it on a random loopback port."""

    def __init__(self, tokens: set[str] | None = None, user: str = "tester") -> None:
        self.tokens = set(tokens or {"hf_test_token"})
        self.user = user
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.server is not None, "start() the hub first"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        """The same server under another host name: the client treats it as a CDN (no auth, no redirects)."""
        return self.url.replace("127.0.0.1", "localhost")

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    # -- state access for tests --------------------------------------------------------------------------------
    def file(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        commit = self.repos[repo_id].resolve(revision)
        return commit.files[path]

    # -- auth --------------------------------------------------------------------------------------------------
    def _token(self, headers: Any) -> str | None:
        authorization = headers.get("Authorization")
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return token

    def _repo(self, repo_id: str, token: str | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if repo.private and token is None:
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _revision(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    @staticmethod
    def _write_access(token: str | None) -> None:
        if token is None:
            raise HubError(401, "You must be authenticated to write to a repo")

    # -- endpoints ---------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> tuple:
        """(status, headers, body) for one request; raises HubError for error answers."""
        token = self._token(headers)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self.create_repo(json.loads(body), token)
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self.validate_yaml(json.loads(body))
        if method in ("GET", "HEAD") and parts[:1] == ["cdn"] and len(parts) == 2:
            return self.cdn(parts[1])
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            with self.lock:
                repo = self._repo(repo_id, token)
                if method == "GET" and not rest:
                    return self.info(repo, "main")
                if method == "GET" and rest[:1] == ["revision"] and len(rest) == 2:
                    return self.info(repo, rest[1])
                if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                    return self.preupload(repo, rest[1], json.loads(body), token)
                if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                    return self.create_commit(repo, rest[1], body, token)
                if method == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                    return self.create_branch(repo, rest[1], json.loads(body or b"{}"), token)
                if method == "GET" and rest == ["refs"]:
                    return self.refs(repo)
                if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                    return self.tree(repo, rest[1], "/".join(rest[2:]), recursive)
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            with self.lock:
                repo = self._repo(f"{parts[0]}/{parts[1]}", token)
                return self.resolve(repo, parts[3], "/".join(parts[4:]))
        raise HubError(404, f"No such endpoint: {method} {path}")

    def create_repo(self, payload: dict, token: str | None) -> tuple:
        self._write_access(token)
        namespace = payload.get("organization") or self.user
        repo_id = f"{namespace}/{payload['name']}"
        if payload.get("type", "model") != "model":
            raise HubError(400, "This test hub only hosts model repos")
        with self.lock:
            if repo_id in self.repos:
                # the Hub names the existing repo's URL, which `create_repo(exist_ok=True)` returns
                raise HubError(409, "You already created this model repo", url=f"{self.url}/{repo_id}")
            repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
            repo.branches["main"] = repo.commit(INITIAL_FILES, "initial commit", None).oid
            self.repos[repo_id] = repo
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def validate_yaml(self, payload: dict) -> tuple:
        errors = card_errors(payload.get("content", ""))
        return (400 if errors else 200), {}, {"errors": [{"message": e} for e in errors], "warnings": []}

    def info(self, repo: Repo, revision: str) -> tuple:
        commit = self._revision(repo, revision)
        return (
            200,
            {},
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit.oid,
                "private": repo.private,
                "lastModified": commit.date,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            },
        )

    def refs(self, repo: Repo) -> tuple:
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(repo.branches.items())
        ]
        return 200, {}, {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    def preupload(self, repo: Repo, revision: str, payload: dict, token: str | None) -> tuple:
        self._write_access(token)
        commit = self._revision(repo, revision)
        files = []
        for entry in payload["files"]:
            existing = commit.files.get(entry["path"])
            files.append(
                {
                    "path": entry["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": None if existing is None else git_blob_id(existing),
                }
            )
        return 200, {}, {"files": files, "commitOid": commit.oid}

    def create_commit(self, repo: Repo, revision: str, body: bytes, token: str | None) -> tuple:
        self._write_access(token)
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        files = dict(head.files)
        message = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
                parent = value.get("parentCommit")
                if parent and parent != head.oid:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "Inline files must be base64-encoded")
                files[value["path"]] = base64.b64decode(value["content"])
                if value["path"] == "README.md":  # the Hub checks a model card's metadata on every commit
                    errors = card_errors(files["README.md"].decode("utf-8", errors="replace"))
                    if errors:
                        raise HubError(400, f"Invalid metadata in README.md. {' '.join(errors)}")
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in files if p.startswith(prefix)]:
                    del files[path]
            else:
                raise HubError(400, f"Unsupported commit operation {key!r} (this hub takes regular uploads only)")
        commit = repo.commit(files, message, head.oid)
        repo.branches[branch] = commit.oid
        return 200, {}, {"commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.oid}", "commitOid": commit.oid}

    def create_branch(self, repo: Repo, branch: str, payload: dict, token: str | None) -> tuple:
        self._write_access(token)
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._revision(repo, payload.get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        return 200, {}, {}

    def tree(self, repo: Repo, revision: str, folder: str, recursive: bool) -> tuple:
        commit = self._revision(repo, revision)
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries: dict[str, dict] = {}

        def folder_entry(directory: str) -> dict:
            return {"type": "directory", "path": directory, "oid": git_blob_id(directory.encode())}

        for path, content in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                directory = prefix + rest.split("/", 1)[0]
                entries[directory] = folder_entry(directory)
                continue
            if recursive:
                for depth in range(1, rest.count("/") + 1):
                    directory = prefix + "/".join(rest.split("/")[:depth])
                    entries[directory] = folder_entry(directory)
            entries[path] = {"type": "file", "path": path, "size": len(content), "oid": git_blob_id(content)}
        if prefix and not entries:
            raise HubError(404, f"{folder} does not exist on {unquote(revision)}", "EntryNotFound")
        return 200, {}, list(entries.values())

    def resolve(self, repo: Repo, revision: str, path: str) -> tuple:
        commit = self._revision(repo, revision)
        if path not in commit.files:
            raise HubError(404, "Entry not found", "EntryNotFound")
        content = commit.files[path]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_id(content)}"'}
        if path.endswith(".safetensors"):
            sha256 = hashlib.sha256(content).hexdigest()
            headers.update(
                {
                    "Location": f"{self.cdn_url}/cdn/{sha256}",
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(content)),
                }
            )
            return 302, headers, b""
        return 200, headers, content

    def cdn(self, sha256: str) -> tuple:
        with self.lock:
            for repo in self.repos.values():
                for commit in repo.commits.values():
                    for content in commit.files.values():
                        if hashlib.sha256(content).hexdigest() == sha256:
                            return 200, {"ETag": f'"{sha256}"'}, content
        raise HubError(404, "No such object")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the test output is the place for failures, not for access logs

    def _answer(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.hub.requests.append((method, url.path))
        try:
            status, headers, payload = self.hub.handle(method, url.path, parse_qs(url.query), self.headers, body)
        except HubError as error:
            status, payload = error.status, {"error": error.message, **error.extra}
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
        except Exception as error:  # a bug in the test hub: answer 500 with the reason instead of hanging
            status, headers, payload = 500, {"X-Error-Message": repr(error)}, {"error": repr(error)}
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")


def main() -> None:
    """Serve a fresh hub until interrupted (``python tests/hub_server.py``), printing its URL."""
    hub = FakeHub().start()
    print(hub.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
