"""A small Hugging Face Hub look-alike for tests, and the pytest fixtures that point the clients at it.

The server (standard library only) answers the Hub endpoints that ``huggingface_hub`` (2.x, with Xet disabled) and
``datasets`` use to create repos, commit regular and LFS files, create branches, list trees and resolve files, for
model, dataset and space repos. It binds to 127.0.0.1 only and keeps its repos in a temporary folder: blobs under
``objects/<sha256>``, one JSON file per repo under ``repos/``. Every commit gets a new 40-hex sha; ``revision=`` may
be a branch, a tag or a commit sha.

Fixtures (load with ``pytest_plugins = ["hub_server"]``):

- ``hub_server``: a running :class:`HubServer` (``.url``, ``.storage``, ``.list_files()``, ``.read_file()``), new
  and empty for each test;
- ``hub_env``: ``hub_server``, with in-process ``huggingface_hub``/``datasets`` pointed at it (fresh caches, dummy
  token, Xet off, online) and every connection or name lookup to any host but 127.0.0.1 refused; all restored after.

``hub_server_env(server, tmp_path)`` gives the same settings as environment variables, for subprocesses.

    def test_push(hub_env, tmp_path):
        from huggingface_hub import HfApi, snapshot_download
        HfApi().create_repo("hub-test-user/rw")                    # USER is the namespace of whoami
        HfApi().upload_folder(folder_path=folder, repo_id="hub-test-user/rw")
        assert hub_env.list_files("hub-test-user/rw") == [".gitattributes", ...]

Like the real Hub, a new repo starts with one commit holding ``.gitattributes``; files matching its LFS patterns
(``*.safetensors``, ``*.parquet``, ...), binary samples and files of 10 MB or more are stored as LFS. Writes need
an ``Authorization: Bearer`` header (any token), reads of public repos do not. ``HfApi``/``HfFileSystem`` objects
created *before* ``hub_env`` (other than the libraries' own module-level ones) keep their old endpoint.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

HOST = "127.0.0.1"
USER = "hub-test-user"
DUMMY_TOKEN = "hf_hub_server_dummy_token"
LFS_THRESHOLD = 10 * 1024 * 1024
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
GITATTRIBUTES = "".join(
    f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n"
    for ext in "7z arrow bin bz2 ckpt gguf gz h5 joblib model msgpack npy npz onnx ot parquet pb pickle pkl pt pth "
    "safetensors tar tflite tgz wasm xz zip zst".split()
)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    """An error answered as the Hub does: status, ``X-Error-Code``/``X-Error-Message`` headers, ``{"error": ...}``."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


class Repo:
    def __init__(self, repo_type: str, repo_id: str, private: bool = False):
        self.type, self.id, self.private = repo_type, repo_id, private
        self.created = _now()
        self.refs: dict[str, str] = {}  # branches (incl. refs/pr/N) -> commit sha
        self.tags: dict[str, str] = {}
        self.commits: dict[str, dict] = {}  # sha -> {parent, title, message, date, files: {path: entry}}

    def resolve(self, rev: str | None) -> str:
        rev = (rev or "main").removeprefix("refs/heads/")
        sha = self.refs.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    def files(self, rev: str | None) -> tuple[str, dict[str, dict]]:
        sha = self.resolve(rev)
        return sha, self.commits[sha]["files"]


class HubServer:
    """Hub-compatible HTTP server on 127.0.0.1; ``with HubServer() as s:`` or ``.start()``/``.stop()``."""

    def __init__(self, storage: str | Path | None = None, host: str = HOST, port: int = 0):
        if host != HOST:
            raise ValueError(f"HubServer only binds to {HOST}, not {host!r}")
        self._own_storage = storage is None
        self.storage = Path(storage or tempfile.mkdtemp(prefix="hub-server-"))
        (self.storage / "objects").mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()
        self._counter = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.errors: list[str] = []  # server-side exceptions (answered 500); the fixture fails the test on any
        self.blocked: list[str] = []  # hosts other than 127.0.0.1 that code under `hub_env` tried to reach
        self._httpd = _Server((host, port), _Handler)
        self._httpd.hub = self
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="hub-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()
        if self._own_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests -------------------------------------------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        try:
            return self.repos[(repo_type or "model", repo_id)]
        except KeyError:
            raise HubError(404, "Repository not found", "RepoNotFound") from None

    def list_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Sorted paths stored in ``repo_id`` at ``revision`` (branch, tag or commit sha)."""
        with self.lock:
            return sorted(self.repo(repo_id, repo_type).files(revision)[1])

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        with self.lock:
            entry = self.repo(repo_id, repo_type).files(revision)[1][path]
        return self.blob(entry["sha256"]).read_bytes()

    def file_info(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> dict:
        """``{"size", "sha256", "sha1", "lfs", "commit"}`` of one stored file (``lfs``: stored as an LFS object)."""
        with self.lock:
            return dict(self.repo(repo_id, repo_type).files(revision)[1][path])

    def blob(self, sha256: str) -> Path:
        return self.storage / "objects" / sha256

    # -- state changes -----------------------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.blob(sha256).exists():
            tmp = self.blob(sha256).with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(self.blob(sha256))
        return sha256

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:  # the client reads "url" from the 409 body when exist_ok=True
                raise HubError(409, f"You already created this {repo_type} repo", url=f"{self.url}/"
                               f"{PREFIX[repo_type]}{repo_id}")
            repo = self.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private)
            self.commit(repo, "main", [("file", ".gitattributes", GITATTRIBUTES.encode())], "initial commit", new=True)
            return repo

    def commit(self, repo: Repo, branch: str, ops: list, title: str, message: str = "", parent=None, new=False):
        """Apply ``ops`` (``("file"|"lfs", path, bytes|sha256)`` or ``("delete"|"deleteFolder", path, None)``)."""
        with self.lock:
            head = None if new else repo.refs[branch]
            if parent is not None and parent != head:
                raise HubError(412, f"Parent commit {parent} is not the head of {branch} ({head})")
            files = dict(repo.commits[head]["files"]) if head else {}
            self._counter += 1
            changes = [(kind, path) for kind, path, _ in ops]
            seed = f"{repo.id} {head} {title} {time.time_ns()} {self._counter} {changes}"
            sha = hashlib.sha1(seed.encode()).hexdigest()
            for kind, path, payload in ops:
                if kind == "file":
                    sha256 = self.put_blob(payload)
                    files[path] = {"size": len(payload), "sha256": sha256, "sha1": _git_sha1(payload), "lfs": False}
                elif kind == "lfs":
                    if not self.blob(payload).exists():
                        raise HubError(422, f"LFS object {payload} for {path} was never uploaded")
                    size = self.blob(payload).stat().st_size
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{payload}\nsize {size}\n"
                    pointer = pointer.encode()
                    files[path] = {"size": size, "sha256": payload, "sha1": _git_sha1(pointer), "lfs": True,
                                   "pointer_size": len(pointer)}
                else:
                    gone = [p for p in files if p == path or (kind == "deleteFolder" and p.startswith(path + "/"))]
                    if not gone:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                if kind in ("file", "lfs"):
                    files[path]["commit"] = sha
            repo.commits[sha] = {"parent": head, "title": title, "message": message, "date": _now(), "files": files}
            repo.refs[branch] = sha
            self._save(repo)
            return sha

    def _save(self, repo: Repo) -> None:
        path = self.storage / "repos" / f"{repo.type}s" / f"{repo.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: getattr(repo, k) for k in ("type", "id", "private", "created", "refs", "tags", "commits")}
        path.write_text(json.dumps(state, indent=1))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def handle_error(self, request, client_address):  # dropped connections are not worth a traceback
        pass

    def server_bind(self):  # skip HTTPServer's getfqdn(): no name lookups
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = HOST, self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hub-server/1"

    def log_message(self, format, *args):  # quiet
        pass

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(status)
        headers = {"Content-Type": ctype, "Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _handle(self):
        hub: HubServer = self.server.hub
        hub.requests.append((self.command, self.path))
        body = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            self._route(hub, parts, query, body)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up (e.g. closed a stream early)
            self.close_connection = True
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            if e.commit:
                headers["X-Repo-Commit"] = e.commit
            self._json({"error": e.message, **e.extra}, e.status, headers)
        except Exception as e:  # a bug here: answer 500 with the reason rather than hang the client
            hub.errors.append(f"{self.command} {self.path}: {type(e).__name__}: {e}")
            self._json({"error": f"hub_server: {type(e).__name__}: {e}"}, 500)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    def _auth(self, hub: HubServer, repo: Repo | None = None, write: bool = False) -> None:
        """Any bearer token is accepted; without one, writes are refused and private repos look missing."""
        if self.headers.get("Authorization", "").startswith("Bearer "):
            return
        if write:
            raise HubError(401, "Invalid credentials in Authorization header")
        if repo is not None and repo.private:
            raise HubError(404, "Repository not found", "RepoNotFound")

    def _repo(self, hub: HubServer, rtype: str, ns: str, name: str, write: bool = False) -> Repo:
        repo = hub.repo(f"{ns}/{name}", rtype)
        self._auth(hub, repo, write)
        return repo

    # -- routes ------------------------------------------------------------------------------------------------
    def _route(self, hub: HubServer, parts: list[str], query: dict, body: bytes):
        m, base = self.command, hub.url
        if parts[:1] == ["api"] and len(parts) >= 2 and parts[1] in TYPES and len(parts) >= 4:
            rtype, ns, name, rest = TYPES[parts[1]], parts[2], parts[3], parts[4:]
            write = m in ("POST", "DELETE") and rest[:1] not in (["paths-info"],)
            repo = self._repo(hub, rtype, ns, name, write)
            url = f"{base}/{PREFIX[rtype]}{repo.id}"
            with hub.lock:
                return self._repo_api(hub, repo, url, m, rest, query, body)
        if parts[:1] == ["api"] and len(parts) == 2 and parts[1] in TYPES and m == "GET":  # list_models/datasets
            authorized = self.headers.get("Authorization", "").startswith("Bearer ")
            with hub.lock:
                found = [r for (t, _), r in sorted(hub.repos.items()) if t == TYPES[parts[1]]
                         and (authorized or not r.private)
                         and r.id.startswith(query.get("author", "") + "/" if "author" in query else "")
                         and query.get("search", "").lower() in r.id.lower()]
                return self._json([{"id": r.id, "author": r.id.split("/")[0], "sha": r.refs["main"],
                                    "private": r.private, "tags": []} for r in found])
        if parts == ["api", "whoami-v2"] and m == "GET":
            self._auth(hub, write=True)
            user = {"type": "user", "id": "0" * 24, "name": USER, "fullname": "Hub Test User", "email": None}
            return self._json({**user, "orgs": [], "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if parts == ["api", "agent-harnesses"]:
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if parts == ["api", "validate-yaml"] and m == "POST":
            content = json.loads(body or b"{}").get("content", "")
            if content.startswith("---") and "\n---" not in content[3:]:
                return self._send(400, b"- metadata block is not closed", ctype="text/plain")
            return self._json({"errors": [], "warnings": []})
        if parts[:2] == ["api", "repos"] and m in ("POST", "DELETE"):
            self._auth(hub, write=True)
            data = json.loads(body or b"{}")
            rtype, name, ns = data.get("type") or "model", data.get("name", ""), data.get("organization") or USER
            if rtype not in PREFIX or not re.fullmatch(r"[\w.\-]{1,96}", name) or not re.fullmatch(r"[\w.\-]+", ns):
                raise HubError(400, f"Invalid repo type or name: {rtype} {ns}/{name}")
            if parts[2:] == ["create"]:
                private = data.get("private") or data.get("visibility") == "private"
                repo = hub.create_repo(rtype, f"{ns}/{name}", bool(private))
                return self._json({"url": f"{base}/{PREFIX[rtype]}{repo.id}", "name": repo.id, "id": repo.id})
            if parts[2:] == ["delete"]:
                with hub.lock:
                    hub.repo(f"{ns}/{name}", rtype)
                    del hub.repos[(rtype, f"{ns}/{name}")]
                return self._json({})
        if parts[:2] == ["__lfs__", "verify"] and m == "POST":
            oid = json.loads(body)["oid"]
            if not hub.blob(oid).exists():
                raise HubError(404, f"LFS object {oid} not found")
            return self._json({})
        if parts[:1] == ["__lfs__"] and len(parts) == 2 and m == "PUT":
            if hashlib.sha256(body).hexdigest() != parts[1]:
                raise HubError(400, f"Uploaded content does not match sha256 {parts[1]}")
            hub.put_blob(body)
            return self._send(200, headers={"ETag": f'"{parts[1]}"'})
        # /{datasets/|spaces/}{ns}/{name}(.git/info/lfs/objects/batch | /resolve/{rev}/{path})
        rtype = TYPES.get(parts[0]) if parts[0] in ("datasets", "spaces") else "model"
        rest = parts[1:] if parts[0] in ("datasets", "spaces") else parts
        if len(rest) >= 3 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            repo = self._repo(hub, rtype, rest[0], rest[1][:-4], write=True)
            objects = []
            for obj in json.loads(body)["objects"]:
                out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if not hub.blob(obj["oid"]).exists():
                    out["actions"] = {
                        "upload": {"href": f"{base}/__lfs__/{obj['oid']}", "header": {}},
                        "verify": {"href": f"{base}/__lfs__/verify", "header": {}},
                    }
                objects.append(out)
            return self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
        if len(rest) >= 5 and rest[2] == "resolve" and m in ("GET", "HEAD"):
            repo = self._repo(hub, rtype, rest[0], rest[1])
            with hub.lock:
                sha, files = repo.files(rest[3])
                entry = files.get("/".join(rest[4:]))
            if entry is None:
                raise HubError(404, "Entry not found", "EntryNotFound", commit=sha)
            return self._serve_file(hub, sha, entry)
        repo_like = (parts[0] == "api" and parts[1:2] and parts[1] in TYPES) or "resolve" in parts[:3]
        raise HubError(404, f"hub_server: no route for {m} /{'/'.join(parts)}", "RepoNotFound" if repo_like else None)

    def _serve_file(self, hub: HubServer, sha: str, entry: dict):
        size, etag = entry["size"], entry["sha256"] if entry["lfs"] else entry["sha1"]
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        start, end, status = 0, size - 1, 200
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if rng and rng.group(1) + rng.group(2):
            if rng.group(1):
                start, end = int(rng.group(1)), min(int(rng.group(2) or size - 1), size - 1)
            else:
                start = max(size - int(rng.group(2)), 0)
            if start >= size or start > end:
                return self._send(416, headers={**headers, "Content-Range": f"bytes */{size}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        self.send_response(status)
        for key, value in {**headers, "Content-Type": "application/octet-stream", "Content-Length": length}.items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.command == "GET" and length:
            with open(hub.blob(entry["sha256"]), "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(length))

    def _entry(self, repo: Repo, path: str, files: dict, sha: str, expand: bool) -> dict:
        if path in files:
            e = files[path]
            out = {"type": "file", "oid": e["sha1"], "size": e["size"], "path": path}
            if e["lfs"]:
                out["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": e["pointer_size"]}
            commit = e.get("commit", sha)
        else:
            out, commit = {"type": "directory", "oid": hashlib.sha1(f"{sha}/{path}".encode()).hexdigest(), "size": 0,
                           "path": path}, sha
        if expand:
            c = repo.commits[commit]
            out["lastCommit"] = {"id": commit, "title": c["title"], "date": c["date"]}
        return out

    def _repo_api(self, hub: HubServer, repo: Repo, url: str, m: str, rest: list[str], query: dict, body: bytes):
        truthy = ("1", "true", "True")
        if m == "GET" and (not rest or rest[0] == "revision"):
            sha, files = repo.files(rest[1] if len(rest) > 1 else None)
            blobs = query.get("blobs") in truthy
            siblings = []
            for path in sorted(files):
                e, sib = files[path], {"rfilename": path}
                if blobs:
                    sib.update(size=e["size"], blobId=e["sha1"])
                    if e["lfs"]:
                        sib["lfs"] = {"sha256": e["sha256"], "size": e["size"], "pointerSize": e["pointer_size"]}
                siblings.append(sib)
            ns = repo.id.split("/")[0]
            return self._json({"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "author": ns,
                               "sha": sha, "lastModified": repo.commits[sha]["date"], "createdAt": repo.created,
                               "private": repo.private, "gated": False, "disabled": False, "downloads": 0,
                               "likes": 0, "tags": [], "siblings": siblings, "usedStorage": 0})
        op, rev = rest[0], (rest[1] if len(rest) > 1 else None)
        if m == "GET" and op == "tree":
            sha, files = repo.files(rev)
            prefix = "/".join(rest[2:]).strip("/")
            recursive, expand = query.get("recursive") in truthy, query.get("expand") in truthy
            pre = prefix + "/" if prefix else ""
            paths: set[str] = set()
            for p in files:
                if p.startswith(pre):
                    segs = p[len(pre):].split("/")
                    last = len(segs) if recursive else 1
                    paths.update(pre + "/".join(segs[: i + 1]) for i in range(min(last, len(segs))))
            if prefix and not paths:
                raise HubError(404, f"Entry not found: {prefix}", "EntryNotFound", commit=sha)
            entries = [self._entry(repo, p, files, sha, expand) for p in sorted(paths)]
            return self._json(sorted(entries, key=lambda e: (e["type"] != "directory", e["path"])))
        if m == "POST" and op == "paths-info":
            sha, files = repo.files(rev)
            if "json" in self.headers.get("Content-Type", ""):
                data = json.loads(body)
                wanted, expand = data.get("paths", []), str(data.get("expand")) in truthy
            else:
                form = parse_qs(body.decode())
                wanted, expand = form.get("paths", []), form.get("expand", ["False"])[-1] in truthy
            out = [self._entry(repo, p.strip("/"), files, sha, expand) for p in wanted
                   if p.strip("/") in files or any(f.startswith(p.strip("/") + "/") for f in files)]
            return self._json(out)
        if m == "GET" and op == "refs":
            def ref(name, kind, sha):
                return {"name": name, "ref": f"refs/{kind}/{name}" if kind else name, "targetCommit": sha}
            branches = [ref(b, "heads", s) for b, s in repo.refs.items() if not b.startswith("refs/")]
            prs = [ref(b, None, s) for b, s in repo.refs.items() if b.startswith("refs/pr/")]
            tags = [ref(t, "tags", s) for t, s in repo.tags.items()]
            return self._json({"branches": branches, "converts": [], "tags": tags, "pullRequests": prs})
        if m == "GET" and op == "commits":
            sha, out = repo.resolve(rev), []
            while sha:
                c = repo.commits[sha]
                out.append({"id": sha, "title": c["title"], "message": c["message"], "date": c["date"],
                            "authors": [{"user": USER}]})
                sha = c["parent"]
            return self._json(out)
        if m == "POST" and op == "preupload":
            sha, files = repo.files(rev)
            attrs = hub.read_file(repo.id, ".gitattributes", repo.type, sha) if ".gitattributes" in files else b""
            patterns = [ln.split()[0] for ln in attrs.decode().splitlines() if "filter=lfs" in ln]
            out = []
            for f in json.loads(body)["files"]:
                path, sample = f["path"], base64.b64decode(f.get("sample", ""))
                lfs = f["size"] >= LFS_THRESHOLD or b"\0" in sample or any(
                    fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) or fnmatch.fnmatch(path, p) for p in patterns)
                old = files.get(path)
                oid = None if old is None else (old["sha256"] if old["lfs"] else old["sha1"])
                out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
            return self._json({"files": out, "commitOid": sha})
        if m == "POST" and op == "commit":
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = items[0]["value"] if items and items[0]["key"] == "header" else {}
            ops = []
            for item in items[1:]:
                key, value = item["key"], item["value"]
                if key == "file":
                    ops.append(("file", value["path"], base64.b64decode(value["content"])))
                elif key == "lfsFile":
                    ops.append(("lfs", value["path"], value["oid"]))
                elif key in ("deletedFile", "deletedFolder"):
                    ops.append(("delete" if key == "deletedFile" else "deleteFolder", value["path"].rstrip("/"), None))
                else:
                    raise HubError(400, f"Unsupported commit operation {key}")
            pr = None
            if query.get("create_pr") in truthy:
                base_sha = repo.resolve(rev)
                pr = 1 + sum(b.startswith("refs/pr/") for b in repo.refs)
                branch, repo.refs[f"refs/pr/{pr}"] = f"refs/pr/{pr}", base_sha
            else:
                branch = rev or "main"
                if branch not in repo.refs:
                    repo.resolve(branch)  # 404 RevisionNotFound when unknown
                    raise HubError(400, f"Can only commit to a branch, not to {branch}")
            sha = hub.commit(repo, branch, ops, header.get("summary", ""), header.get("description", ""),
                             parent=header.get("parentCommit"))
            return self._json({"success": True, "commitOid": sha, "commitUrl": f"{url}/commit/{sha}",
                               "pullRequestUrl": f"{url}/discussions/{pr}" if pr else None, "hookOutput": ""})
        if op in ("branch", "tag") and rev:
            table = repo.refs if op == "branch" else repo.tags
            if m == "DELETE":
                if rev not in table:
                    raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
                del table[rev]
            elif m == "POST":
                data = json.loads(body or b"{}")
                name, start = (rev, data.get("startingPoint")) if op == "branch" else (data.get("tag"), rev)
                if name in table:
                    raise HubError(409, f"Reference already exists: {name}")
                table[name] = repo.resolve(start)
            hub._save(repo)
            return self._json({})
        raise HubError(404, f"hub_server: no route for {m} {url}/{'/'.join(rest)}")


# ---------------------------------------------------------------------------------------------------------------
# pytest side
# ---------------------------------------------------------------------------------------------------------------


def hub_server_env(server: HubServer, tmp_path: str | Path) -> dict[str, str]:
    """Environment variables that point huggingface_hub/datasets/transformers in a *new* process at ``server``.

    Use as ``subprocess.run(cmd, env={**os.environ, **hub_server_env(server, tmp_path)})``. Caches go under
    ``tmp_path/hf_home``. (In a subprocess nothing blocks other hosts; see ``hub_env`` for in-process tests.)
    """
    home = Path(tmp_path) / "hf_home"
    return {
        "HF_ENDPOINT": server.url,
        "HUGGINGFACE_CO_STAGING": "0",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_MODULES_CACHE": str(home / "modules"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_TOKEN": DUMMY_TOKEN,
        "HUGGING_FACE_HUB_TOKEN": DUMMY_TOKEN,
        "HF_OIDC_RESOURCE": "",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


class BlockedNetworkError(OSError):
    """Raised by ``hub_env`` when code under test tries to reach a host other than 127.0.0.1."""


_LOOPBACK = {HOST, "localhost", "::1", None}


def _block_other_hosts(monkeypatch, server: HubServer) -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(host):
        host = host.decode() if isinstance(host, bytes) else host
        if host not in _LOOPBACK:
            server.blocked.append(str(host))
            raise BlockedNetworkError(f"hub_env: tests may only reach {HOST}, not {host!r}")

    def getaddrinfo(host, *args, **kwargs):
        check(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def _reset_clients() -> None:
    """Drop state the clients keep across calls: HTTP connections, cached filesystems and their listings."""
    from huggingface_hub import HfFileSystem, hf_file_system
    from huggingface_hub.utils import _http

    _http.close_session()
    HfFileSystem.clear_instance_cache()
    hf_file_system.hffs.dircache.clear()
    hf_file_system.hffs._repo_and_revision_exists_cache.clear()


@pytest.fixture
def hub_server(tmp_path_factory):
    """A running, empty :class:`HubServer` on 127.0.0.1 (free port); stopped after the test."""
    with HubServer(storage=tmp_path_factory.mktemp("hub_storage")) as server:
        yield server
    if server.errors:
        pytest.fail("hub_server answered 500 (a bug in tests/hub_server.py):\n" + "\n".join(server.errors))


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch):
    """``hub_server``, with in-process huggingface_hub and datasets pointed at it; everything restored after."""
    import datasets.config as dconfig
    import huggingface_hub.constants as C
    from huggingface_hub import hf_api, hf_file_system
    from huggingface_hub.utils import _cache_assets, _cache_manager, _git_credential

    env = hub_server_env(hub_server, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    home, url = Path(env["HF_HOME"]), hub_server.url
    hub_constants = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(C.HF_URL_HOSTS | {HOST}),
        "HF_HOME": str(home),
        "HF_HUB_CACHE": env["HF_HUB_CACHE"],
        "HUGGINGFACE_HUB_CACHE": env["HF_HUB_CACHE"],
        "HF_ASSETS_CACHE": env["HF_ASSETS_CACHE"],
        "HUGGINGFACE_ASSETS_CACHE": env["HF_ASSETS_CACHE"],
        "HF_XET_CACHE": env["HF_XET_CACHE"],
        "HF_TOKEN_PATH": env["HF_TOKEN_PATH"],
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(home / ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
    }
    for name, value in hub_constants.items():
        monkeypatch.setattr(C, name, value, raising=False)
    # module-level copies made at import time (`from ..constants import X`, module-level HfApi/HfFileSystem)
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", env["HF_ASSETS_CACHE"])
    monkeypatch.setattr(_git_credential, "ENDPOINT", url)
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    # transformers' Trainer keeps its own shared HfApi (created on first use with the endpoint of that moment).
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(transformers_hub, "_hf_api", None, raising=False)
    monkeypatch.setattr(hf_file_system.hffs, "endpoint", url)
    monkeypatch.setattr(hf_file_system.hffs._api, "endpoint", url)
    if "huggingface_hub.cli.auth" in sys.modules:
        monkeypatch.setattr(sys.modules["huggingface_hub.cli.auth"], "ENDPOINT", url)
    if "transformers.utils.hub" in sys.modules:
        monkeypatch.setattr(sys.modules["transformers.utils.hub"], "HF_MODULES_CACHE", env["HF_MODULES_CACHE"])
    datasets_config = {
        "HF_ENDPOINT": url,
        "HUB_DATASETS_URL": url + "/datasets/{repo_id}/resolve/{revision}/{path}",
        "HF_HUB_OFFLINE": False,
        "HF_DATASETS_OFFLINE": False,
        "HF_CACHE_HOME": str(home),
        "HF_DATASETS_CACHE": Path(env["HF_DATASETS_CACHE"]),
        "HF_MODULES_CACHE": Path(env["HF_MODULES_CACHE"]),
        "DOWNLOADED_DATASETS_PATH": Path(env["HF_DATASETS_CACHE"]) / "downloads",
        "EXTRACTED_DATASETS_PATH": Path(env["HF_DATASETS_CACHE"]) / "downloads" / "extracted",
        "HF_UPDATE_DOWNLOAD_COUNTS": False,  # else a HEAD request to s3.amazonaws.com per load_dataset
        "USE_PARQUET_EXPORT": False,  # else load_dataset asks datasets-server.<endpoint host>
    }
    for name, value in datasets_config.items():
        monkeypatch.setattr(dconfig, name, value)
    _block_other_hosts(monkeypatch, hub_server)
    _reset_clients()
    yield hub_server
    _reset_clients()
