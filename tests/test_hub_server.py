"""The Hub look-alike in hub_server.py works with the real huggingface_hub and datasets clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.hub_server import DUMMY_TOKEN, ORG, USER, BlockedNetworkError, HubServer, hub_server_env

REPO = f"{USER}/rewriter"


def _rewriter_folder(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    save_file({"lora_A": torch.arange(12, dtype=torch.float32).reshape(3, 4), "lora_B": torch.ones(4, 3)},
              str(path / "adapter_model.safetensors"))
    (path / "rewriter_config.json").write_text(json.dumps({"base_model": "tiny", "r": 4}))
    (path / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- lora\n---\n# Rewriter\n")
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_server_binds_loopback_only(tmp_path):
    with pytest.raises(ValueError):
        HubServer(storage=tmp_path, host="0.0.0.0")
    with HubServer(storage=tmp_path) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server._httpd.server_address[0] == "127.0.0.1"
    assert tmp_path.exists()  # a storage folder given by the caller is left alone


def test_upload_folder_then_snapshot_download(hub_env, tmp_path):
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    folder = _rewriter_folder(tmp_path / "rewriter")
    url = api.create_repo(REPO)
    assert url.repo_id == REPO and url.startswith(hub_env.url)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409
    api.create_repo(REPO, exist_ok=True)

    info = api.upload_folder(folder_path=folder, repo_id=REPO, commit_message="add rewriter")
    assert hub_env.file_info(REPO, "adapter_model.safetensors")["lfs"]  # went through the LFS batch/upload exchange
    assert not hub_env.file_info(REPO, "rewriter_config.json")["lfs"]
    assert any(path.endswith(".git/info/lfs/objects/batch") for _, path in hub_env.requests)
    assert hub_env.list_files(REPO) == [".gitattributes", "README.md", "adapter_model.safetensors",
                                        "rewriter_config.json"]

    local = snapshot_download(REPO, cache_dir=tmp_path / "fresh_cache")
    assert Path(local).name == info.oid
    got = _files(Path(local))
    assert got.pop(".gitattributes").startswith(b"*.7z filter=lfs")
    assert got == _files(folder)
    assert hub_env.read_file(REPO, "adapter_model.safetensors") == (folder / "adapter_model.safetensors").read_bytes()


def test_hf_hub_download_model_info_and_list_files(hub_env, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, list_repo_files, model_info

    folder = _rewriter_folder(tmp_path / "rewriter")
    api = HfApi()
    api.create_repo(REPO)
    commit = api.upload_folder(folder_path=folder, repo_id=REPO)

    path = hf_hub_download(REPO, "adapter_model.safetensors")
    assert Path(path).read_bytes() == (folder / "adapter_model.safetensors").read_bytes()
    assert Path(path).parent.name == commit.oid
    assert json.loads(Path(hf_hub_download(REPO, "rewriter_config.json")).read_text())["r"] == 4

    info = model_info(REPO, files_metadata=True)  # module-level function = module-level HfApi instance
    assert info.id == REPO and info.sha == commit.oid
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").stat().st_size
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["adapter_model.safetensors"].size == sizes["adapter_model.safetensors"] and lfs["README.md"] is None
    assert sorted(list_repo_files(REPO)) == [".gitattributes", "README.md", "adapter_model.safetensors",
                                            "rewriter_config.json"]
    assert api.whoami()["name"] == USER
    assert api.file_exists(REPO, "README.md") and not api.file_exists(REPO, "nope.txt")


def test_branch_upload_and_revision_download(hub_env, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    api = HfApi()
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b'{"v": 1}', path_in_repo="rewriter_config.json", repo_id=REPO)
    api.create_branch(REPO, branch="v2")
    with pytest.raises(HfHubHTTPError):
        api.create_branch(REPO, branch="v2")
    api.create_branch(REPO, branch="v2", exist_ok=True)
    second = api.upload_file(path_or_fileobj=b'{"v": 2}', path_in_repo="rewriter_config.json", repo_id=REPO,
                             revision="v2")
    api.upload_file(path_or_fileobj=b"extra", path_in_repo="sub/dir/extra.txt", repo_id=REPO, revision="v2")

    def read(**kw):
        return Path(hf_hub_download(REPO, "rewriter_config.json", **kw)).read_bytes()

    assert read() == b'{"v": 1}'
    assert read(revision="v2") == b'{"v": 2}'
    assert read(revision=second.oid) == b'{"v": 2}'
    assert read(revision=first.oid) == b'{"v": 1}'
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "sub/dir/extra.txt")  # only on the branch
    assert Path(hf_hub_download(REPO, "sub/dir/extra.txt", revision="v2")).read_bytes() == b"extra"

    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": first.oid, "v2": api.model_info(
        REPO, revision="v2").sha}
    assert api.model_info(REPO, revision="v2").sha != second.oid  # the extra.txt commit came after
    assert sorted(api.list_repo_files(REPO, revision="v2")) == [".gitattributes", "rewriter_config.json",
                                                                  "sub/dir/extra.txt"]
    tree = {f.path for f in api.list_repo_tree(REPO, revision="v2")}
    assert tree == {".gitattributes", "rewriter_config.json", "sub"}
    assert {f.path for f in api.list_repo_tree(REPO, path_in_repo="sub", recursive=True, revision="v2")} == {
        "sub/dir", "sub/dir/extra.txt"}
    snap = snapshot_download(REPO, revision="v2", cache_dir=tmp_path / "c2")
    assert (Path(snap) / "sub/dir/extra.txt").read_bytes() == b"extra"
    titles = [c.title for c in api.list_repo_commits(REPO, revision="v2")]
    assert titles[-1] == "initial commit" and len(titles) == 4


def test_commit_with_deletes(hub_env):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import EntryNotFoundError

    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    api.create_commit(REPO, repo_type="dataset", commit_message="add", operations=[
        CommitOperationAdd("a.txt", b"a"), CommitOperationAdd("d/b.txt", b"b"), CommitOperationAdd("d/c.bin", b"\0c"),
    ])
    assert hub_env.file_info(REPO, "d/c.bin", repo_type="dataset")["lfs"]  # binary sample => LFS
    api.create_commit(REPO, repo_type="dataset", commit_message="rm", operations=[
        CommitOperationDelete("a.txt"), CommitOperationDelete("d/"), CommitOperationAdd("e.txt", b"e"),
    ])
    assert hub_env.list_files(REPO, repo_type="dataset") == [".gitattributes", "e.txt"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("a.txt", REPO, repo_type="dataset")


def test_model_card_push_and_load(hub_env):
    from huggingface_hub import HfApi, ModelCard, ModelCardData

    HfApi().create_repo(REPO)
    data = ModelCardData(license="apache-2.0", base_model="HuggingFaceTB/SmolLM2-135M-Instruct", tags=["rewriter"])
    card = ModelCard.from_template(data, model_id="rewriter")
    card.push_to_hub(REPO)
    assert any(path == "/api/validate-yaml" for _, path in hub_env.requests)
    loaded = ModelCard.load(REPO)
    assert loaded.data.license == "apache-2.0"
    assert loaded.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert loaded.data.tags == ["rewriter"]
    assert hub_env.read_file(REPO, "README.md").decode() == str(card)


def test_dataset_push_to_hub_and_load_dataset(hub_env):
    import datasets
    from huggingface_hub import DatasetCard

    repo = f"{USER}/patched-gsm8k"
    rows = {"question": ["1+1?", "2+3?", "7*6?"], "answer": ["#### 2", "#### 5", "#### 42"], "idx": [0, 1, 2]}
    datasets.Dataset.from_dict(rows).push_to_hub(repo)  # creates the dataset repo itself
    files = hub_env.list_files(repo, repo_type="dataset")
    shards = [f for f in files if f.endswith(".parquet")]
    assert shards and all(f.startswith("data/train-") for f in shards)
    assert hub_env.file_info(repo, shards[0], repo_type="dataset")["lfs"]

    loaded = datasets.load_dataset(repo, split="train")
    assert loaded.to_dict() == rows
    card = DatasetCard.load(repo)
    assert card.data.configs[0]["config_name"] == "default"
    assert card.data.configs[0]["data_files"][0]["split"] == "train"
    assert card.data.dataset_info["splits"][0]["num_examples"] == 3

    # a second push to the same split replaces the shards (delete + add in one commit, with parent_commit)
    datasets.Dataset.from_dict({k: v[:1] for k, v in rows.items()}).push_to_hub(repo)
    datasets.Dataset.from_dict({k: v[1:] for k, v in rows.items()}).push_to_hub(repo, split="test")
    both = datasets.load_dataset(repo)
    assert both["train"].to_dict() == {k: v[:1] for k, v in rows.items()}
    assert both["test"].num_rows == 2
    assert DatasetCard.load(repo).data.dataset_info["splits"][1]["num_examples"] == 2
    assert hub_env.blocked == []  # nothing tried to leave 127.0.0.1 (datasets-server, s3 download counts...)


def test_the_token_writes_only_its_own_namespace_and_orgs(hub_env):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    me = api.whoami()
    assert me["name"] == USER and [org["name"] for org in me["orgs"]] == [ORG]
    api.create_repo(f"{ORG}/shared")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=f"{ORG}/shared")
    assert hub_env.list_files(f"{ORG}/shared") == [".gitattributes", "config.json"]

    for repo_type in ("model", "dataset"):
        with pytest.raises(HfHubHTTPError) as err:
            api.create_repo("someone-else/new", repo_type=repo_type)
        assert err.value.response.status_code == 403
        assert f'rights to create a {repo_type} under the namespace "someone-else"' in err.value.server_message
    assert ("model", "someone-else/new") not in hub_env.repos

    # A repo someone else owns (seeded server-side): readable, not writable, not deletable.
    hub_env.create_repo("model", "someone-else/theirs")
    api.create_repo("someone-else/theirs", exist_ok=True)  # the client sees it exists and goes on
    assert api.list_repo_files("someone-else/theirs") == [".gitattributes"]
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="someone-else/theirs")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch("someone-else/theirs", branch="v2")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        api.delete_repo("someone-else/theirs")
    assert err.value.response.status_code == 403
    assert hub_env.list_files("someone-else/theirs") == [".gitattributes"] and "v2" not in hub_env.repo("someone-else/theirs").refs


def test_not_found_errors(hub_env, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(f"{USER}/missing", cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{USER}/missing", "README.md", cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().dataset_info(f"{USER}/missing")
    HfApi().create_repo(REPO)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.json", cache_dir=tmp_path / "c")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, ".gitattributes", revision="no-such-branch", cache_dir=tmp_path / "c")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="no-such-branch", cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError):  # a model id is not a dataset id
        HfApi().repo_info(REPO, repo_type="dataset")


def test_range_requests_and_hffs(hub_env):
    from huggingface_hub import HfApi, HfFileSystem
    from huggingface_hub.utils import get_session

    payload = bytes(range(256)) * 40
    HfApi().create_repo(REPO)
    HfApi().upload_file(path_or_fileobj=payload, path_in_repo="blob.bin", repo_id=REPO)
    url = f"{hub_env.url}/{REPO}/resolve/main/blob.bin"
    r = get_session().get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == payload[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(payload)}"
    assert get_session().get(url, headers={"Range": "bytes=-5"}).content == payload[-5:]
    assert get_session().get(url, headers={"Range": f"bytes={len(payload)}-"}).status_code == 416
    head = get_session().head(url)
    assert head.headers["X-Linked-Size"] == str(len(payload)) and head.headers["X-Repo-Commit"]
    fs = HfFileSystem()
    with fs.open(f"{REPO}/blob.bin", "rb", block_size=100) as f:
        f.seek(1000)
        assert f.read(50) == payload[1000:1050]
    assert fs.ls(REPO, detail=False) == [f"{REPO}/.gitattributes", f"{REPO}/blob.bin"]


def test_chunked_lfs_upload(hub_server):
    import hashlib
    import http.client

    data = b"\0chunked" * 500
    oid = hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", int(hub_server.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("PUT", f"/__lfs__/{oid}", body=iter([data[:1000], data[1000:]]), encode_chunked=True)
    assert conn.getresponse().status == 200
    assert hub_server.blob(oid).read_bytes() == data


def test_hub_env_refuses_other_hosts(hub_env):
    with pytest.raises(BlockedNetworkError):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(BlockedNetworkError):
        socket.create_connection(("10.0.0.1", 80), timeout=1)
    assert hub_env.blocked == ["huggingface.co", "10.0.0.1"]
    import huggingface_hub.constants as C

    assert C.ENDPOINT == hub_env.url and C.HF_HUB_OFFLINE is False and C.HF_HUB_DISABLE_XET is True
    assert os.environ["HF_TOKEN"] == DUMMY_TOKEN


def test_subprocess_with_env_helper(hub_server, tmp_path):
    hub_server.create_repo("dataset", f"{USER}/rows")
    repo = hub_server.repo(f"{USER}/rows", "dataset")
    hub_server.commit(repo, "main", [("file", "rows.jsonl", b'{"x": 1}\n')], "add rows")
    script = (
        "import sys, huggingface_hub as h\n"
        "p = h.hf_hub_download(sys.argv[1], 'rows.jsonl', repo_type='dataset')\n"
        "print(open(p).read().strip(), h.constants.HF_HUB_CACHE in p)\n"
    )
    env = {**os.environ, **hub_server_env(hub_server, tmp_path)}
    out = subprocess.run([sys.executable, "-c", script, f"{USER}/rows"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['{"x":', "1}", "True"]
    assert str(tmp_path / "hf_home") in "".join(env[k] for k in ("HF_HUB_CACHE",))
