"""A small Hub-API server on 127.0.0.1 implementing what `huggingface_hub` calls to push and to download.

Endpoints: repo create, branch create, validate-yaml, preupload (every file "regular", with the stored
git-blob oid so unchanged files are skipped), NDJSON commit, repo/revision info, HEAD/GET resolve with
X-Repo-Commit + ETag, and `whoami-v2`. Writes and `whoami` need an `Authorization: Bearer` token not in
`rejected_tokens` (else 401, like the Hub); `token_role` is what `whoami` reports. `fail_commits` makes the next N commits answer 500 (a network failure mid-push),
`fail_whoami` the next N token checks; with `hang_commits` a commit is read and never answered (until the server
stops);
`requests` records every request (method, path, headers) for the token-leak check. Everything is in memory.

Dataset repos (read-only, for `datasets` streaming; `add_dataset`): repo/revision info, the recursive tree
WITH directory entries, `paths-info`, and GET/HEAD resolve honouring `Range` (206 + Content-Range), with
X-Repo-Commit and ETag. `dataset_bytes_served` counts the file bytes sent (the read-amplification checks).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "branches": {name: {"sha", "files"}}}
        self.fail_commits = 0
        self.fail_whoami = 0
        self.hang_commits = False
        self.stopping = threading.Event()  # set when the server stops: a hung request ends then
        self.rejected_tokens: set[str] = set()
        self.token_role = "write"
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        self.datasets: dict[str, dict] = {}  # repo_id -> {"sha", "files": {path: bytes}}
        self.dataset_bytes_served = 0

    def add_dataset(self, repo_id: str, files: dict[str, bytes], card_data: dict | None = None) -> str:
        """A dataset repo with `files` on `main` (and `card_data`, its card's front matter as the Hub parses
        it); returns its commit sha."""
        sha = hashlib.sha1(
            json.dumps(sorted((k, git_blob_sha(v)) for k, v in files.items())).encode()
        ).hexdigest()
        self.datasets[repo_id] = {"sha": sha, "files": dict(files), "card_data": dict(card_data or {})}
        return sha

    @staticmethod
    def branch(repo: dict, revision: str) -> dict | None:
        """A branch by name or by its head commit."""
        return repo["branches"].get(revision) or next(
            (b for b in repo["branches"].values() if b["sha"] == revision), None
        )

    def commit(self, repo_id: str, branch: str, files: dict[str, bytes], message: str) -> str:
        repo = self.repos[repo_id]
        head = repo["branches"].setdefault(branch, {"sha": "0" * 40, "files": {}})
        merged = {**head["files"], **files}
        sha = hashlib.sha1(
            (
                head["sha"] + message + json.dumps(sorted((k, git_blob_sha(v)) for k, v in merged.items()))
            ).encode()
        ).hexdigest()
        repo["branches"][branch] = {"sha": sha, "files": merged}
        return sha


class _Handler(BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, code: int, body: bytes | dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict | list) else (body or b"")
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if isinstance(body, dict | list):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def _record(self) -> None:
        self.state.requests.append((self.command, self.path, dict(self.headers)))

    def _authorized(self) -> bool:
        """A bearer token is present and not rejected; otherwise answer 401 as the Hub does."""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if token and token not in self.state.rejected_tokens:
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _repo_path(self, parts: list[str]) -> tuple[str, list[str]]:
        return f"{parts[0]}/{parts[1]}", parts[2:]

    # ------------------------------------------------------------------ POST
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        if urlparse(self.path).path.startswith("/api/datasets/"):
            self._record()
            return self._dataset_post(urlparse(self.path).path)
        self._record()
        path = urlparse(self.path).path
        body = self._body()
        if not self._authorized():
            return None
        with self.state.lock:
            if path == "/api/repos/create":
                req = json.loads(body)
                repo_id = f"{req.get('organization') or 'user'}/{req['name']}"
                if repo_id in self.state.repos:
                    return self._send(
                        409, {"error": "You already created this model repo", "url": f"/{repo_id}"}
                    )
                self.state.repos[repo_id] = {"private": bool(req.get("private")), "branches": {}}
                self.state.commit(
                    repo_id, "main", {".gitattributes": b"*.safetensors filter=lfs\n"}, "initial commit"
                )
                return self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            if not path.startswith("/api/models/"):
                return self._send(404, {"error": "not found"})
            repo_id, rest = self._repo_path(path.removeprefix("/api/models/").split("/"))
            if repo_id not in self.state.repos:
                return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            repo = self.state.repos[repo_id]
            action, revision = rest[0], unquote("/".join(rest[1:]))
            if action == "branch":
                if revision in repo["branches"]:
                    return self._send(409, {"error": "Reference already exists"})
                repo["branches"][revision] = dict(repo["branches"]["main"])
                return self._send(200, {})
            if action == "preupload":
                files = repo["branches"].get(revision, {"files": {}})["files"]
                req = json.loads(body)
                return self._send(
                    200,
                    {
                        "files": [
                            {
                                "path": f["path"],
                                "uploadMode": "regular",
                                "shouldIgnore": False,
                                "oid": git_blob_sha(files[f["path"]]) if f["path"] in files else None,
                            }
                            for f in req["files"]
                        ]
                    },
                )
            if action == "commit":
                if self.state.hang_commits:  # accepted, read, never answered
                    self.state.lock.release()
                    try:
                        self.state.stopping.wait(600)
                    finally:
                        self.state.lock.acquire()
                    return None
                if self.state.fail_commits > 0:
                    self.state.fail_commits -= 1
                    return self._send(500, {"error": "Internal Error (injected)"})
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(x["value"] for x in lines if x["key"] == "header")
                files = {
                    x["value"]["path"]: base64.b64decode(x["value"]["content"])
                    for x in lines
                    if x["key"] == "file"
                }
                if revision not in repo["branches"]:
                    return self._send(
                        404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
                    )
                sha = self.state.commit(repo_id, revision, files, header["summary"])
                return self._send(
                    200,
                    {
                        "commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{sha}",
                        "commitOid": sha,
                        "pullRequestUrl": None,
                    },
                )
        self._send(404, {"error": "not found"})

    # ------------------------------------------------------------------ GET / HEAD
    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        path = urlparse(self.path).path
        if path.startswith(("/api/datasets/", "/datasets/")):
            return self._dataset_get(path)
        if path == "/api/whoami-v2":
            if not self._authorized():
                return None
            if self.state.fail_whoami > 0:
                self.state.fail_whoami -= 1
                return self._send(500, {"error": "Internal Error (injected)"})
            return self._send(
                200,
                {
                    "type": "user",
                    "name": "user",
                    "auth": {
                        "type": "access_token",
                        "accessToken": {"displayName": "test", "role": self.state.token_role},
                    },
                },
            )
        with self.state.lock:
            if path.startswith("/api/models/"):
                parts = path.removeprefix("/api/models/").split("/")
                repo_id, rest = self._repo_path(parts)
                repo = self.state.repos.get(repo_id)
                if repo is None:
                    return self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                if rest and rest[0] == "tree":  # list_repo_tree: /api/models/{repo}/tree/{revision}[/{path}]
                    branch = self.state.branch(repo, unquote(rest[1]))  # snapshot_download lists by commit
                    if branch is None:
                        return self._send(
                            404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
                        )
                    prefix = "/".join(rest[2:])
                    return self._send(
                        200,
                        [
                            {"type": "file", "path": f, "size": len(d), "oid": git_blob_sha(d)}
                            for f, d in sorted(branch["files"].items())
                            if f.startswith(prefix)
                        ],
                    )
                revision = unquote("/".join(rest[1:])) if rest and rest[0] == "revision" else "main"
                branch = repo["branches"].get(revision)
                if branch is None:
                    return self._send(
                        404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
                    )
                return self._send(
                    200,
                    {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": branch["sha"],
                        "private": repo["private"],
                        "siblings": [{"rfilename": f} for f in sorted(branch["files"])],
                    },
                )
            parts = path.lstrip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id = f"{parts[0]}/{parts[1]}"
                revision, filename = unquote(parts[3]), unquote("/".join(parts[4:]))
                repo = self.state.repos.get(repo_id)
                if repo is None:
                    return self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                branch = self.state.branch(repo, revision)
                if branch is None:
                    return self._send(
                        404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
                    )
                if filename not in branch["files"]:
                    return self._send(
                        404,
                        {"error": "Entry not found"},
                        {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": branch["sha"]},
                    )
                data = branch["files"][filename]
                return self._send(
                    200,
                    data,
                    {
                        "X-Repo-Commit": branch["sha"],
                        "ETag": f'"{git_blob_sha(data)}"',
                        "Content-Type": "application/octet-stream",
                    },
                )
        self._send(404, {"error": "not found"})


# ---------------------------------------------------------------------------------------------- datasets
def _dataset_entries(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
    """Tree entries under `prefix`: files and directories (the Hub lists both; `datasets` needs the latter)."""
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict] = {}
    for name, data in sorted(files.items()):
        if not name.startswith(base):
            continue
        rest = name[len(base) :].split("/")
        for depth in range(1, len(rest)):
            directory = base + "/".join(rest[:depth])
            if depth == 1 or recursive:
                entries.setdefault(
                    directory,
                    {"type": "directory", "path": directory, "oid": git_blob_sha(directory.encode())},
                )
            if not recursive:
                break
        if len(rest) == 1 or recursive:
            entries[name] = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha(data)}
    return [entries[k] for k in sorted(entries)]


def _dataset_repo(handler: _Handler, parts: list[str]) -> tuple[str, dict | None, list[str]]:
    repo_id, rest = "/".join(parts[:2]), parts[2:]
    repo = handler.state.datasets.get(repo_id)
    if repo is None:
        handler._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
    return repo_id, repo, rest


def _dataset_info(repo_id: str, repo: dict) -> dict:
    return {
        "id": repo_id,
        "_id": repo_id,
        "sha": repo["sha"],
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "cardData": repo.get("card_data", {}),
        "lastModified": "2026-01-01T00:00:00.000Z",
        "siblings": [{"rfilename": f} for f in sorted(repo["files"])],
    }


def _dataset_get(handler: _Handler, path: str) -> None:
    """GET/HEAD on a dataset repo: info, revision info, tree, resolve (with Range)."""
    query = parse_qs(urlparse(handler.path).query)
    with handler.state.lock:
        if path.startswith("/api/datasets/"):
            repo_id, repo, rest = _dataset_repo(handler, path.removeprefix("/api/datasets/").split("/"))
            if repo is None:
                return None
            if rest and rest[0] == "tree":  # /tree/{rev}[/{path}]?recursive=...
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                prefix = unquote("/".join(rest[2:]))
                return handler._send(200, _dataset_entries(repo["files"], prefix, recursive))
            return handler._send(200, _dataset_info(repo_id, repo))  # info, or /revision/{rev}
        parts = path.removeprefix("/datasets/").split("/")
        repo_id, repo, rest = _dataset_repo(handler, parts)
        if repo is None:
            return None
        if len(rest) < 3 or rest[0] != "resolve":
            return handler._send(404, {"error": "not found"})
        filename = unquote("/".join(rest[2:]))
        data = repo["files"].get(filename)
        if data is None:
            return handler._send(
                404,
                {"error": "Entry not found"},
                {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["sha"]},
            )
        headers = {
            "X-Repo-Commit": repo["sha"],
            "ETag": f'"{git_blob_sha(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        code, body = 200, data
        ranged = handler.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            if first == "":  # suffix range: the last N bytes
                start, end = max(0, len(data) - int(last)), len(data) - 1
            else:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            code, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        if handler.command == "GET":
            handler.state.dataset_bytes_served += len(body)
    if handler.command == "HEAD":
        handler.send_response(code)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(k, v)
        handler.end_headers()
        return None
    return handler._send(code, body, headers)


def _dataset_post(handler: _Handler, path: str) -> None:
    """POST /api/datasets/{repo}/paths-info/{rev} (form or JSON `paths`): the entries of those paths."""
    body = handler._body()
    try:
        paths = json.loads(body)["paths"]
    except (ValueError, KeyError, TypeError):
        paths = parse_qs(body.decode()).get("paths", [])
    with handler.state.lock:
        repo_id, repo, rest = _dataset_repo(handler, path.removeprefix("/api/datasets/").split("/"))
        if repo is None:
            return None
        if not rest or rest[0] != "paths-info":
            return handler._send(404, {"error": "not found"})
        everything = {e["path"]: e for e in _dataset_entries(repo["files"], "", recursive=True)}
        return handler._send(200, [everything[p.strip("/")] for p in paths if p.strip("/") in everything])


_Handler._dataset_get = _dataset_get
_Handler._dataset_post = _dataset_post


class HubServer:
    """`with HubServer() as hub:` serves on 127.0.0.1:<free port>; `hub.endpoint` is the HF_ENDPOINT to use."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.state.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
