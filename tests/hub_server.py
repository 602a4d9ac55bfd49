"""A local, directory-backed, Hugging Face Hub-compatible HTTP server for tests.

The Hub cannot be reached from the machines these tests run on, so the tests talk to this server
instead, through the *real* `huggingface_hub` client. The client reads its endpoint once, at import
time (`huggingface_hub.constants.ENDPOINT` comes from `HF_ENDPOINT`), so client code runs in a
subprocess whose environment comes from `hub_env(endpoint, hf_home)`.

What the client calls, and what this server answers (read from huggingface_hub 2.4: hf_api.py,
_commit_api.py, _upload_pipeline.py, file_download.py, _snapshot_download.py, utils/_http.py):

    POST /api/repos/create                      {"name", "organization", "type", "visibility"}
                                                -> {"url", "name"}; 409 (+ "url") if it exists
    DELETE /api/repos/delete                    {"name", "organization", "type"}
    POST /api/validate-yaml                     {"content"} -> 200 {} or 400 {"errors": [...]}
    GET  /api/whoami-v2                         -> {"name", "type": "user", ...}
    GET  /api/{type}s/{repo}[/revision/{rev}]   -> {"id", "sha", "siblings": [{"rfilename"}], ...}
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=..   -> [{"type", "path", "oid", "size"}]
    GET  /api/{type}s/{repo}/commits/{rev}      -> [{"id", "title", "message", "authors", "date"}]
    POST /api/{type}s/{repo}/preupload/{rev}    -> every file {"uploadMode": "regular",
                                                   "shouldIgnore": false, "oid": <blob oid or null>}
    POST /api/{type}s/{repo}/commit/{rev}       NDJSON: header, file (base64), deletedFile,
                                                deletedFolder -> {"commitOid", "commitUrl"}
    HEAD/GET /[datasets/|spaces/]{repo}/resolve/{rev}/{path}
                                                X-Repo-Commit, ETag "<oid>", Content-Length

Because every file is "regular", contents arrive inline (base64) in the commit: no LFS and no xet
traffic, and no `X-Xet-Hash`/`X-Linked-*` headers go out, so downloads are plain HTTP GETs.

Errors follow the Hub: a JSON body {"error": ...} plus `X-Error-Code` (RepoNotFound,
RevisionNotFound, EntryNotFound) and `X-Error-Message`, which is what `hf_raise_for_status` turns
into `RepositoryNotFoundError`, `RevisionNotFoundError`, `RemoteEntryNotFoundError`. Writes without an
`Authorization: Bearer ...` header get 401; any bearer token is accepted.

Storage (under `root_dir`, so a restarted server sees the same repos):

    objects/<oid[:2]>/<oid[2:]>                 file contents, addressed by their git blob oid:
                                                oid = sha1(b"blob <len>\\0" + data), as `git hash-object`
    repos/<type>s/<namespace>/<name>/repo.json  {"private", "created_at"}
    repos/.../refs/heads/<branch>               the commit sha the branch points at
    repos/.../commits/<sha>.json                {"oid", "parents", "title", "message", "date",
                                                 "files": {path: {"oid", "size"}}}

A commit sha is the sha1 of its canonical JSON (parents, message, date, files): 40 hex digits, as the
client's `REGEX_COMMIT_HASH` expects. A new repo starts with an "initial commit" holding a
`.gitattributes` file, as on the Hub.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LocalHub", "RecordedRequest", "git_blob_oid", "hub_env", "local_hub", "run_python"]

DEFAULT_USER = "test-user"
DEFAULT_BRANCH = "main"
# URL segment after /api/ -> repo type, and repo type -> prefix in resolve/web URLs.
API_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
COMMIT_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
INITIAL_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pth filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.png filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_oid(data: bytes) -> str:
    """The oid git gives a file: sha1(b"blob <len>\\0" + data). The Hub uses it as the ETag of regular
    files, and the client compares it with the preupload answer to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    """Hub date format: '2024-05-01T12:00:00.000000Z' (what `parse_datetime` reads)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HubError(Exception):
    """An HTTP error answer, in the Hub's shape."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


# ------------------------------------------------------------------------------------------------
# Storage
# ------------------------------------------------------------------------------------------------


class _Store:
    """Repos, commits and blobs on disk. One lock serialises writes; reads go straight to disk."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # -- paths --------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        namespace, name = repo_id.split("/")
        return self.root / "repos" / f"{repo_type}s" / namespace / name

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return repo_id.count("/") == 1 and (self.repo_dir(repo_type, repo_id) / "repo.json").is_file()

    def meta(self, repo_type: str, repo_id: str) -> dict:
        return json.loads((self.repo_dir(repo_type, repo_id) / "repo.json").read_text())

    # -- blobs --------------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        path = self.root / "objects" / oid[:2] / oid[2:]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return oid

    def get_blob(self, oid: str) -> bytes:
        return (self.root / "objects" / oid[:2] / oid[2:]).read_bytes()

    # -- repos --------------------------------------------------------------------------------
    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> bool:
        """Create the repo with its initial commit; False if it already exists."""
        with self.lock:
            if self.exists(repo_type, repo_id):
                return False
            d = self.repo_dir(repo_type, repo_id)
            (d / "refs" / "heads").mkdir(parents=True, exist_ok=True)
            (d / "commits").mkdir(exist_ok=True)
            (d / "repo.json").write_text(json.dumps({"private": bool(private), "created_at": _now()}))
            self._write_commit(repo_type, repo_id, DEFAULT_BRANCH, "initial commit", "", parents=[],
                               files={".gitattributes": self._file_entry(INITIAL_GITATTRIBUTES)})
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> bool:
        import shutil

        with self.lock:
            if not self.exists(repo_type, repo_id):
                return False
            shutil.rmtree(self.repo_dir(repo_type, repo_id))
            return True

    # -- commits ------------------------------------------------------------------------------
    def branches(self, repo_type: str, repo_id: str) -> dict[str, str]:
        heads = self.repo_dir(repo_type, repo_id) / "refs" / "heads"
        return {p.name: p.read_text().strip() for p in heads.iterdir() if p.is_file()}

    def read_commit(self, repo_type: str, repo_id: str, sha: str) -> dict | None:
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> dict | None:
        """A branch name or a full commit sha of this repo -> that commit; None if neither."""
        branches = self.branches(repo_type, repo_id)
        if revision in branches:
            return self.read_commit(repo_type, repo_id, branches[revision])
        if COMMIT_SHA_RE.fullmatch(revision):
            return self.read_commit(repo_type, repo_id, revision)
        return None

    def log(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
        """Commits reachable from `revision`, newest first (first-parent history)."""
        commit, out = self.resolve(repo_type, repo_id, revision), []
        while commit is not None:
            out.append(commit)
            commit = self.read_commit(repo_type, repo_id, commit["parents"][0]) if commit["parents"] else None
        return out

    def _file_entry(self, data: bytes) -> dict:
        return {"oid": self.put_blob(data), "size": len(data)}

    def _write_commit(self, repo_type, repo_id, branch, title, description, parents, files) -> dict:
        body = {"parents": parents, "title": title, "message": description, "date": _now(),
                "author": DEFAULT_USER, "files": dict(sorted(files.items()))}
        sha = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
        commit = {"oid": sha, **body}
        d = self.repo_dir(repo_type, repo_id)
        (d / "commits" / f"{sha}.json").write_text(json.dumps(commit, indent=1))
        ref = d / "refs" / "heads" / branch
        tmp = ref.with_suffix(".tmp")
        tmp.write_text(sha)
        os.replace(tmp, ref)
        return commit

    def commit(self, repo_type, repo_id, branch, title, description, additions, deletions,
               deleted_folders, parent_commit=None) -> dict:
        """Apply additions {path: bytes}, deletions [path] and deleted folders [path] on top of `branch`."""
        with self.lock:
            head_sha = self.branches(repo_type, repo_id).get(branch)
            if head_sha is None:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent_commit is not None and parent_commit != head_sha:
                raise HubError(412, f"A commit has happened since. Parent commit {parent_commit} is not "
                                    f"the head of '{branch}' ({head_sha}).")
            files = dict(self.read_commit(repo_type, repo_id, head_sha)["files"])
            for path in deletions:
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            for folder in deleted_folders:
                prefix = folder.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            for path, data in additions.items():
                files[path] = self._file_entry(data)
            return self._write_commit(repo_type, repo_id, branch, title, description, [head_sha], files)


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server saw: method, path (with query) and the Authorization header, if any."""

    method: str
    path: str
    authorization: str | None


def _split_front_matter(content: str) -> tuple[str | None, str]:
    """README.md -> (YAML between the leading '---' lines or None, rest). Raises ValueError if unclosed."""
    lines = content.splitlines()
    if not lines or lines[0].strip() != "---":
        return None, content
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1:])
    raise ValueError("the YAML front matter opened by '---' is never closed")


def _card_metadata(content: bytes) -> dict:
    """The README's YAML metadata as a dict ({} if there is none or it does not parse)."""
    import yaml  # PyYAML ships with huggingface_hub, the client this server is for

    try:
        yaml_text, _ = _split_front_matter(content.decode("utf-8"))
        data = yaml.safe_load(yaml_text) if yaml_text else {}
    except (ValueError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer sets Content-Length
    server: "_Server"

    # -- plumbing -----------------------------------------------------------------------------
    def log_message(self, format, *args):  # noqa: A002 - silence stderr; requests are recorded instead
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    @property
    def hub(self) -> "LocalHub":
        return self.server.hub

    @property
    def store(self) -> _Store:
        return self.server.hub.store

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        try:
            data = json.loads(self._read_body() or b"{}")
        except json.JSONDecodeError as e:
            raise HubError(400, f"Request body is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object")
        return data

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict | None = None, head_only: bool = False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _send_json(self, status: int, obj, headers: dict | None = None, head_only: bool = False):
        self._send(status, json.dumps(obj).encode(), headers=headers, head_only=head_only)

    def _dispatch(self, method: str):
        self.hub._record(RecordedRequest(method, self.path, self.headers.get("Authorization")))
        url = urlsplit(self.path)
        # Split before unquoting: revisions arrive quoted with safe="" ("refs%2Fpr%2F1"), paths with safe="/".
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if method in ("POST", "PUT", "DELETE") and self.hub.echo_authorization:
                self._read_body()  # a misbehaving endpoint or proxy that reports the credentials it got
                raise HubError(400, f"Bad request: unexpected credentials {self._bearer()!r}")
            if method in ("POST", "PUT", "DELETE") and not self._bearer():
                # Drain the body so the keep-alive connection stays in sync.
                self._read_body()
                raise HubError(401, "Invalid username or password.")
            if segments and segments[0] == "api":
                self._api(method, segments[1:], query)
            else:
                self._resolve(method, segments)
        except HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            self._send_json(e.status, {"error": e.message}, headers=headers, head_only=(method == "HEAD"))
        except Exception as e:  # a bug here should show up as a 500 the client reports, not a hang
            self._send_json(500, {"error": f"LocalHub internal error: {type(e).__name__}: {e}"},
                            head_only=(method == "HEAD"))

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else ""
        return token or None

    def _not_implemented(self, method: str):
        raise HubError(404, f"LocalHub does not implement {method} {self.path}")

    # -- repo lookup --------------------------------------------------------------------------
    def _repo(self, repo_type: str, namespace: str, name: str) -> str:
        """Return the repo id if it exists and may be read with this request's credentials."""
        repo_id = f"{namespace}/{name}"
        if not self.store.exists(repo_type, repo_id):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if self.store.meta(repo_type, repo_id)["private"] and not self._bearer():
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo_id

    def _commit_for(self, repo_type: str, repo_id: str, revision: str) -> dict:
        commit = self.store.resolve(repo_type, repo_id, revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -- /api/... -----------------------------------------------------------------------------
    def _api(self, method: str, seg: list[str], query: dict):
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo(self._json_body())
        if seg == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo(self._json_body())
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(self._json_body())
        if seg == ["whoami-v2"] and method == "GET":
            if not self._bearer():
                raise HubError(401, "Invalid credentials in Authorization header")
            return self._send_json(200, {"type": "user", "name": self.hub.user, "fullname": self.hub.user,
                                         "orgs": [], "auth": {"type": "access_token"}})
        if len(seg) >= 3 and seg[0] in API_REPO_TYPES:
            repo_type = API_REPO_TYPES[seg[0]]
            repo_id = self._repo(repo_type, seg[1], seg[2])
            rest = seg[3:]
            if not rest and method == "GET":
                return self._info(repo_type, repo_id, DEFAULT_BRANCH, query)
            if len(rest) >= 2:
                action, revision, tail = rest[0], rest[1], "/".join(rest[2:])
                if action == "revision" and method == "GET" and not tail:
                    return self._info(repo_type, repo_id, revision, query)
                if action == "tree" and method == "GET":
                    return self._tree(repo_type, repo_id, revision, tail, query)
                if action == "commits" and method == "GET" and not tail:
                    return self._commits(repo_type, repo_id, revision)
                if action == "preupload" and method == "POST" and not tail:
                    return self._preupload(repo_type, repo_id, revision, query)
                if action == "commit" and method == "POST" and not tail:
                    return self._commit(repo_type, repo_id, revision, query)
        self._not_implemented(method)

    def _create_repo(self, payload: dict):
        name = payload.get("name") or ""
        namespace = payload.get("organization") or self.hub.user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type '{repo_type}', expected one of {sorted(URL_PREFIXES)}")
        if not (REPO_NAME_RE.fullmatch(name) and REPO_NAME_RE.fullmatch(namespace)):
            raise HubError(400, f"Invalid repo name '{namespace}/{name}'")
        repo_id = f"{namespace}/{name}"
        url = f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.store.create_repo(repo_type, repo_id, private=private):
            return self._send_json(409, {"error": f"You already created this {repo_type} repo", "url": url})
        self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, payload: dict):
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload.get('name')}"
        if repo_type not in URL_PREFIXES or not self.store.delete_repo(repo_type, repo_id):
            raise HubError(404, "Repository not found", "RepoNotFound")
        self._send(200, b"", content_type="text/plain")

    def _validate_yaml(self, payload: dict):
        """Minimal, real validation: the front matter (if any) must be closed and be a YAML mapping."""
        import yaml

        errors = []
        try:
            yaml_text, _ = _split_front_matter(payload.get("content") or "")
            if yaml_text is not None and yaml_text.strip():
                if not isinstance(yaml.safe_load(yaml_text), dict):
                    errors.append("the YAML metadata must be a mapping (key: value pairs)")
        except (ValueError, yaml.YAMLError) as e:
            errors.append(f"invalid YAML metadata: {e}")
        if errors:
            return self._send_json(400, {"errors": [{"message": m} for m in errors]})
        self._send_json(200, {"errors": [], "warnings": []})

    def _info(self, repo_type: str, repo_id: str, revision: str, query: dict):
        commit = self._commit_for(repo_type, repo_id, revision)
        meta = self.store.meta(repo_type, repo_id)
        files = commit["files"]
        with_blobs = query.get("blobs", "").lower() in ("1", "true")
        siblings = [{"rfilename": p, **({"blobId": f["oid"], "size": f["size"]} if with_blobs else {})}
                    for p, f in files.items()]
        card = _card_metadata(self.store.get_blob(files["README.md"]["oid"])) if "README.md" in files else {}
        tags = card.get("tags") if isinstance(card.get("tags"), list) else []
        info = {
            "_id": commit["oid"][:24], "id": repo_id, "author": repo_id.split("/")[0],
            "sha": commit["oid"], "lastModified": commit["date"], "createdAt": meta["created_at"],
            "private": meta["private"], "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": tags, "siblings": siblings, "usedStorage": sum(f["size"] for f in files.values()),
        }
        if card:
            info["cardData"] = card
        if repo_type == "model":
            info["modelId"] = repo_id
            info["library_name"] = card.get("library_name")
            info["pipeline_tag"] = card.get("pipeline_tag")
        if repo_type == "space":
            info["sdk"] = card.get("sdk")
        self._send_json(200, info)

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str, query: dict):
        commit = self._commit_for(repo_type, repo_id, revision)
        recursive = query.get("recursive", "").lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit["files"]):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound",
                           headers={"X-Repo-Commit": commit["oid"]})
        files, folders = {}, {}
        for p, f in commit["files"].items():
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):].split("/")
            # every folder between `prefix` and the file (only the first one when not recursive)
            for depth in range(1, len(rel) if recursive else min(2, len(rel))):
                folder = prefix + "/".join(rel[:depth])
                folders.setdefault(folder, []).append(f["oid"])
            if recursive or len(rel) == 1:
                files[p] = f
        entries = [{"type": "directory", "path": d, "size": 0,
                    "oid": hashlib.sha1(" ".join(sorted(oids)).encode()).hexdigest()}
                   for d, oids in sorted(folders.items())]
        entries += [{"type": "file", "path": p, "oid": f["oid"], "size": f["size"]} for p, f in sorted(files.items())]
        self._send_json(200, entries)

    def _commits(self, repo_type: str, repo_id: str, revision: str):
        self._commit_for(repo_type, repo_id, revision)
        self._send_json(200, [{"id": c["oid"], "title": c["title"], "message": c["message"], "date": c["date"],
                               "authors": [{"user": c["author"], "avatar": None}]}
                              for c in self.store.log(repo_type, repo_id, revision)])

    def _writable_branch(self, repo_type: str, repo_id: str, revision: str, query: dict) -> str:
        if query.get("create_pr") in ("1", "true"):
            raise HubError(400, "LocalHub does not support pull requests (create_pr=True)")
        if revision not in self.store.branches(repo_type, repo_id):
            raise HubError(404, f"Invalid rev id: {revision} (only existing branches can be committed to)",
                           "RevisionNotFound")
        return revision

    def _preupload(self, repo_type: str, repo_id: str, revision: str, query: dict):
        payload = self._json_body()
        branch = self._writable_branch(repo_type, repo_id, revision, query)
        head = self._commit_for(repo_type, repo_id, branch)
        files = payload.get("files")
        if not isinstance(files, list):
            raise HubError(400, "preupload expects {'files': [{'path', 'sample', 'size'}, ...]}")
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                   "oid": head["files"].get(f["path"], {}).get("oid")} for f in files]
        self._send_json(200, {"files": answer, "commitOid": head["oid"]})

    def _commit(self, repo_type: str, repo_id: str, revision: str, query: dict):
        raw = self._read_body()
        branch = self._writable_branch(repo_type, repo_id, revision, query)
        header, additions, deletions, deleted_folders = None, {}, [], []
        for line in raw.decode("utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
                continue
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/"):
                raise HubError(400, f"Invalid path in commit: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                additions[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deletions.append(path)
            elif key == "deletedFolder":
                deleted_folders.append(path)
            else:  # lfsFile / xet: never asked for, since preupload answers "regular" for every file
                raise HubError(400, f"LocalHub accepts only regular (inline) files, got {key!r} for {path}")
        if header is None or not header.get("summary"):
            raise HubError(400, "The commit needs a header line with a non-empty 'summary'")
        commit = self.store.commit(repo_type, repo_id, branch, header["summary"], header.get("description", ""),
                                   additions, deletions, deleted_folders, header.get("parentCommit"))
        url = f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}/commit/{commit['oid']}"
        self._send_json(200, {"success": True, "commitOid": commit["oid"], "commitUrl": url, "hookOutput": ""})

    # -- /{repo}/resolve/{rev}/{path} ---------------------------------------------------------
    def _resolve(self, method: str, seg: list[str]):
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = API_REPO_TYPES[seg[0]], seg[1:]
        if method not in ("GET", "HEAD") or len(seg) < 5 or seg[2] != "resolve":
            self._not_implemented(method)
        repo_id = self._repo(repo_type, seg[0], seg[1])
        commit = self._commit_for(repo_type, repo_id, seg[3])
        path = "/".join(seg[4:])
        entry = commit["files"].get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": commit["oid"]})
        data = self.store.get_blob(entry["oid"])
        self._send(200, data, content_type="application/octet-stream", head_only=(method == "HEAD"),
                   headers={"X-Repo-Commit": commit["oid"], "ETag": f'"{entry["oid"]}"'})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: "LocalHub"


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


class LocalHub:
    """A Hub-compatible server on 127.0.0.1, backed by `root_dir`.

        with LocalHub(tmp_path / "hub") as hub:
            env = hub_env(hub.endpoint, tmp_path / "hf_home")
            run_python("from huggingface_hub import create_repo; create_repo('me/x')", env)
            hub.commits("me/x")        # newest first
            hub.files("me/x")          # {path: bytes} at main

    `echo_authorization=True` makes every write fail (400) with an error that quotes the request's
    bearer token, as a badly behaved proxy might: a client must not print it. `port=0` picks a free port. `stop()` takes the endpoint down (connections are refused), while
    `endpoint` keeps its value so tests can point a client at a down Hub. `start()` again serves the
    same repos on a new port.
    """

    def __init__(self, root_dir: str | os.PathLike, port: int = 0, user: str = DEFAULT_USER,
                 echo_authorization: bool = False):
        self.store = _Store(Path(root_dir))
        self.user = user
        self.echo_authorization = echo_authorization  # every write fails with 400, quoting its Authorization header
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: str | None = None
        self._requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "LocalHub":
        if self._server is not None:
            raise RuntimeError(f"LocalHub is already serving at {self._endpoint}")
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.hub = self
        self._server = server
        self._endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="LocalHub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("LocalHub has not been started: call start() or use it as a context manager")
        return self._endpoint

    @property
    def root(self) -> Path:
        return self.store.root

    # -- inspection (server side, no HTTP) ----------------------------------------------------
    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> bool:
        """Create a repo directly (False if it already exists)."""
        return self.store.create_repo(repo_type, repo_id, private)

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return self.store.exists(repo_type, repo_id)

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = DEFAULT_BRANCH) -> list[dict]:
        """Commits of `revision`, newest first: dicts with oid, parents, title, message, date, files."""
        if not self.store.exists(repo_type, repo_id):
            raise KeyError(f"No {repo_type} repo '{repo_id}' on this LocalHub")
        return self.store.log(repo_type, repo_id, revision)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = DEFAULT_BRANCH) -> dict[str, bytes]:
        """{path: contents} of the repo at `revision` (branch or commit sha)."""
        if not self.store.exists(repo_type, repo_id):
            raise KeyError(f"No {repo_type} repo '{repo_id}' on this LocalHub")
        commit = self.store.resolve(repo_type, repo_id, revision)
        if commit is None:
            raise KeyError(f"No revision '{revision}' in {repo_type} repo '{repo_id}'")
        return {p: self.store.get_blob(f["oid"]) for p, f in commit["files"].items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request served so far (method, path, Authorization header), oldest first."""
        with self._requests_lock:
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._requests_lock:
            self._requests.append(request)


def hub_env(endpoint: str, hf_home: str | os.PathLike, token: str | None = "hf_local_hub_fake_token",
            hide_modules: tuple[str, ...] = (), base: dict | None = None) -> dict[str, str]:
    """Environment for a subprocess whose huggingface_hub/diffusers talk to `endpoint`.

    HF_ENDPOINT must be set before huggingface_hub is imported, hence a subprocess. Offline switches
    and cache/token overrides are removed, HF_HOME is `hf_home` (make it empty for a cold cache; the
    diffusers remote-code module cache lives in it too), and HF_TOKEN is `token` (None: no token at
    all, e.g. to check that writes are refused).

    `hide_modules=("annotated_pipeline",)` makes `import annotated_pipeline` fail in the subprocess
    even though the package is installed (editable installs resolve it through a finder placed after
    the PYTHONPATH entries, so a shadow module on PYTHONPATH that raises ModuleNotFoundError wins,
    and PYTHONSAFEPATH keeps the working directory off sys.path): for "loads without the package" tests.
    """
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE",
                   "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH", "HF_STORED_TOKENS_PATH",
                   "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN", "HF_ASSETS_CACHE", "HF_XET_CACHE",
                   "HF_MODULES_CACHE"):
            del env[key]
    Path(hf_home).mkdir(parents=True, exist_ok=True)
    env.update({
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "DISABLE_TELEMETRY": "1",
        "NO_PROXY": ",".join(filter(None, ["127.0.0.1", "localhost", env.get("NO_PROXY", "")])),
        "no_proxy": ",".join(filter(None, ["127.0.0.1", "localhost", env.get("no_proxy", "")])),
        "PYTHONUNBUFFERED": "1",
    })
    if token is not None:
        env["HF_TOKEN"] = token
    if hide_modules:
        shadow = Path(hf_home) / "_hidden_modules"
        shadow.mkdir(exist_ok=True)
        for name in hide_modules:
            (shadow / f"{name}.py").write_text(
                f"raise ModuleNotFoundError({name + ' is hidden in this subprocess (hub_env(hide_modules=...))'!r}, "
                f"name={name!r})\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow), env.get("PYTHONPATH", "")]))
        env["PYTHONSAFEPATH"] = "1"  # no cwd/script dir in front of sys.path (Python >= 3.11)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 120, cwd: str | None = None
               ) -> subprocess.CompletedProcess:
    """Run `code` with this interpreter in a subprocess with `env`; returns the CompletedProcess
    (text stdout/stderr, no check: the caller asserts on returncode and output). The working
    directory defaults to env["HF_HOME"], so nothing is imported from the caller's checkout by accident."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd or env.get("HF_HOME"),
                          capture_output=True, text=True, timeout=timeout)


try:
    import pytest
except ImportError:  # the server itself needs only the standard library
    pytest = None

if pytest is not None:

    @pytest.fixture
    def local_hub(tmp_path):
        """A started LocalHub in tmp_path/"hub", stopped when the test ends."""
        with LocalHub(tmp_path / "hub") as hub:
            yield hub
