"""Pushing rewriters and patched data sets (`hf_patchdist.hub.upload`) through the real clients, against the loopback Hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import good_rewrite_for, make_dataset
from fixtures.hub_server import ORG, USER

from hf_patchdist.generation import StaticBackend
from hf_patchdist.hub import push_patched_dataset
from hf_patchdist.hub.cards import CARD_BEGIN, CARD_END
from hf_patchdist.patch_statistics import PatchStatistics
from hf_patchdist.rewriter import PATCH_COLUMNS, Rewriter, RewriterConfig

from .helpers import DS_REPO, REPO, REWRITER_REPO_FILES, commit_sha, generate, load, patched_with_static_backend


def test_push_then_from_pretrained_gives_the_same_greedy_rewrites(hub, adapter_folder, tiny_model_dir):
    import torch

    local = load(adapter_folder)
    url = local.push_to_hub(REPO)
    assert url.startswith(hub.url) and commit_sha(url) == hub.repo(REPO).refs["main"]
    assert hub.list_files(REPO) == REWRITER_REPO_FILES
    assert len(hub.repo(REPO).commits) == 2, "the rewriter goes up in one commit (after the repo's initial one)"
    assert hub.file_info(REPO, "adapter_model.safetensors")["lfs"]

    remote = load(REPO)  # the hub_env cache is fresh: this downloads
    assert remote.source == REPO
    assert Path(remote.adapter_path).is_relative_to(os.environ["HF_HUB_CACHE"])
    assert remote.config == local.config
    assert remote.fingerprint() == local.fingerprint(), "same config and adapter bytes: same datasets cache key"

    dataset = make_dataset("plain")
    texts = generate(local, dataset)
    assert generate(remote, dataset) == texts
    base_only = Rewriter(tiny_model_dir, config=local.config, dtype="float32", device="cpu", show_progress=False)
    assert generate(base_only, dataset) != texts, "the downloaded adapter is what changes the generations"
    local_state = {k: v for k, v in local.model.state_dict().items() if "lora_" in k}
    remote_state = {k: v for k, v in remote.model.state_dict().items() if "lora_" in k}
    assert local_state and local_state.keys() == remote_state.keys()
    assert all(torch.equal(local_state[k], remote_state[k]) for k in local_state)

    patched_local = dataset.map(local, batched=True)
    patched_remote = dataset.map(remote, batched=True)
    assert patched_remote.column_names == patched_local.column_names == dataset.column_names + list(PATCH_COLUMNS)
    assert patched_remote.to_dict() == patched_local.to_dict()


def test_rewriter_card_on_the_hub(hub, adapter_folder):
    from huggingface_hub import ModelCard

    summary = {"steps": 40, "num_generations": 4, "rewards": {"mean": 0.91, "task": 0.8}, "datasets": ["openai/gsm8k"],
               "license": "apache-2.0"}
    rewriter = load(adapter_folder)
    rewriter.config.training_summary = summary
    rewriter.push_to_hub(REPO, commit_message="First rewriter")
    assert ("POST", "/api/validate-yaml") in hub.requests, "the card passed the Hub's YAML check before the commit"
    card = ModelCard.load(REPO)
    assert card.data.library_name == "hf-patchdist"
    assert {"hf-patchdist", "rewriter", "peft", "lora"} <= set(card.data.tags)
    assert card.data.datasets == ["openai/gsm8k"] and card.data.license == "apache-2.0"
    assert card.data.base_model is None, "a base model in a local folder is no Hub link"
    assert f'Rewriter.from_pretrained("{REPO}")' in card.text
    assert "dataset.map(rewriter, batched=True" in card.text
    assert "| steps | 40 |" in card.text and "| rewards/mean | 0.91 |" in card.text
    assert str(adapter_folder) not in str(card), "no path of the author's machine in the card"
    assert hub.repo(REPO).commits[hub.repo(REPO).refs["main"]]["title"] == "First rewriter"
    pushed_config = json.loads(hub.read_file(REPO, "rewriter_config.json"))
    assert pushed_config["training_summary"] == summary


def test_a_pushed_revision_loads_by_revision(hub, tiny_model_dir):
    first = Rewriter(tiny_model_dir, num_candidates=1)
    second = Rewriter(tiny_model_dir, num_candidates=3, verifier="exact")
    first.push_to_hub(REPO)
    url = second.push_to_hub(REPO, revision="v2")
    assert hub.repo(REPO).refs["v2"] == commit_sha(url)

    assert load(REPO).config.num_candidates == 1
    on_branch = load(REPO, revision="v2")
    assert on_branch.config.num_candidates == 3 and on_branch.config.verifier["name"] == "exact"
    assert load(REPO, revision=commit_sha(url)).config == second.config
    with pytest.raises(FileNotFoundError, match=f"{REPO}.*no revision 'v9'"):
        load(REPO, revision="v9")


def test_pushing_a_prompted_rewriter_over_an_adapter_removes_the_adapter(hub, adapter_folder, tiny_model_dir):
    load(adapter_folder).push_to_hub(REPO)
    Rewriter(tiny_model_dir).push_to_hub(REPO)
    assert hub.list_files(REPO) == [".gitattributes", "README.md", "rewriter_config.json"]
    assert load(REPO).adapter_path is None


def test_push_without_a_token(hub, tiny_model, tiny_model_dir, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN")
    with pytest.raises(PermissionError, match=f"{REPO}.*no Hub token.*hf auth login"):
        Rewriter(tiny_model_dir).push_to_hub(REPO)
    patched, _ = patched_with_static_backend(tiny_model)
    with pytest.raises(PermissionError, match=f"{DS_REPO}.*hf auth login"):
        push_patched_dataset(patched, DS_REPO)
    assert not any(method == "POST" for method, _ in hub.requests), "refused before any upload"

    # A token that the Hub itself refuses (401) gets the same advice.
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_expired")
    with pytest.raises(PermissionError, match=f"{REPO}.*refused the token.*hf auth login"):
        Rewriter(tiny_model_dir).push_to_hub(REPO)


def test_push_to_a_namespace_the_token_cannot_write(hub, tiny_model, tiny_model_dir):
    """The loopback Hub, like the Hub, lets the token's user write only under its own namespace and its orgs."""
    with pytest.raises(PermissionError, match="someone-else/rw.*may not write.*rights to create a model under the namespace.*"
                                              "'someone-else' namespace"):
        Rewriter(tiny_model_dir).push_to_hub("someone-else/rw")
    assert ("someone-else/rw" not in {repo_id for _, repo_id in hub.repos}), "nothing was created"

    # An existing repo of someone else: create_repo(exist_ok=True) finds it, the commit is refused.
    hub.create_repo("model", "someone-else/theirs")
    before = hub.repo("someone-else/theirs").refs["main"]
    with pytest.raises(PermissionError, match="someone-else/theirs.*may not write.*rights to write"):
        Rewriter(tiny_model_dir).push_to_hub("someone-else/theirs")
    assert hub.repo("someone-else/theirs").refs["main"] == before and hub.list_files("someone-else/theirs") == [".gitattributes"]
    patched, _ = patched_with_static_backend(tiny_model)
    with pytest.raises(PermissionError, match="someone-else/data.*may not write"):
        push_patched_dataset(patched, "someone-else/data")

    # An organisation the user belongs to is writable.
    Rewriter(tiny_model_dir).push_to_hub(f"{ORG}/rw")
    assert "rewriter_config.json" in hub.list_files(f"{ORG}/rw")


def test_push_patched_dataset_then_load_dataset(hub, tiny_model, tiny_model_dir):
    import datasets
    from huggingface_hub import DatasetCard

    Rewriter(tiny_model_dir).push_to_hub(REPO)
    model, tokenizer = tiny_model
    rewriter = load(REPO, model=model, tokenizer=tokenizer, backend=StaticBackend(
        lambda p: good_rewrite_for(p) if "Natalia" in p or "Weng" in p else "The answer is 5.\n#### 5"))
    patched = make_dataset("plain").map(rewriter, batched=True)
    stats = PatchStatistics.from_dataset(patched)
    assert (stats.rewritten, stats.fallback) == (2, 2)

    url = push_patched_dataset(patched, DS_REPO, rewriter=rewriter)
    assert commit_sha(url) == hub.repo(DS_REPO, "dataset").refs["main"]
    loaded = datasets.load_dataset(DS_REPO, split="train")
    assert loaded.column_names == patched.column_names
    assert loaded.features == patched.features
    assert loaded.to_dict() == patched.to_dict()

    card = DatasetCard.load(DS_REPO)
    assert card.data.configs[0]["data_files"][0]["split"] == "train", "datasets' own metadata is kept"
    assert card.data.dataset_info["splits"][0]["num_examples"] == 4
    assert {"hf-patchdist", "distribution-patch"} <= set(card.data.tags)
    entry = card.data.hf_patchdist["splits"]["train"]
    assert PatchStatistics(**entry["patch_statistics"]) == stats
    assert entry["rewriter"]["id"] == REPO and entry["rewriter"]["fingerprint"] == rewriter.fingerprint()
    assert stats.to_markdown() in card.text
    assert f"[{REPO}]({hub.url}/{REPO})" in card.text
    assert all(f"`{column}`" in card.text for column in PATCH_COLUMNS)

    # A second split: both splits' statistics stay, our section is replaced, not repeated.
    test_part = patched.select([0, 2])
    push_patched_dataset(test_part, DS_REPO, rewriter=REPO, split="test")
    both = datasets.load_dataset(DS_REPO)
    assert both["train"].to_dict() == patched.to_dict() and both["test"].to_dict() == test_part.to_dict()
    card = DatasetCard.load(DS_REPO)
    assert set(card.data.hf_patchdist["splits"]) == {"train", "test"}
    assert card.data.hf_patchdist["splits"]["test"]["patch_statistics"] == PatchStatistics.from_dataset(test_part).to_dict()
    assert card.text.count(CARD_BEGIN) == 1 and card.text.count(CARD_END) == 1
    assert len(card.data.dataset_info["splits"]) == 2


def test_push_patched_dataset_revision_and_refusals(hub, tiny_model):
    import datasets

    patched, _ = patched_with_static_backend(tiny_model)
    push_patched_dataset(patched.select([0]), DS_REPO)
    push_patched_dataset(patched, DS_REPO, revision="full")
    assert datasets.load_dataset(DS_REPO, split="train").num_rows == 1
    assert datasets.load_dataset(DS_REPO, split="train", revision="full").to_dict() == patched.to_dict()
    with pytest.raises(ValueError, match="Not a patched data set"):
        push_patched_dataset(make_dataset("plain"), DS_REPO)


def test_sliced_split_and_dataset_dict(hub, tiny_model):
    import datasets
    from huggingface_hub import DatasetCard

    patched, _ = patched_with_static_backend(tiny_model)
    patched = datasets.Dataset(patched.data, split=datasets.NamedSplit("train[800:804]"))  # as load_dataset slices
    push_patched_dataset(patched, DS_REPO)
    assert set(DatasetCard.load(DS_REPO).data.hf_patchdist["splits"]) == {"train"}
    pair = datasets.DatasetDict({"train": patched.select([0, 1]), "validation": patched.select([2, 3])})
    push_patched_dataset(pair, f"{DS_REPO}-dict")
    loaded = datasets.load_dataset(f"{DS_REPO}-dict")
    assert loaded["validation"].to_dict() == pair["validation"].to_dict()
    assert set(DatasetCard.load(f"{DS_REPO}-dict").data.hf_patchdist["splits"]) == {"train", "validation"}


def test_cli_push_a_rewriter_folder_and_a_saved_dataset(hub, adapter_folder, tiny_model, tmp_path, capsys):
    import datasets
    from huggingface_hub import DatasetCard

    from hf_patchdist import cli

    assert cli.main(["push", str(adapter_folder), REPO, "--commit-message", "from the CLI"]) == 0
    assert hub.list_files(REPO) == REWRITER_REPO_FILES
    assert load(REPO).config == RewriterConfig.from_folder(adapter_folder)
    assert hub.read_file(REPO, "adapter_model.safetensors") == (adapter_folder / "adapter_model.safetensors").read_bytes()
    assert "Pushed the rewriter" in capsys.readouterr().out

    patched, _ = patched_with_static_backend(tiny_model)
    patched.save_to_disk(str(tmp_path / "patched"))
    assert cli.main(["push", str(tmp_path / "patched"), DS_REPO, "--rewriter", REPO, "--private"]) == 0
    assert hub.repo(DS_REPO, "dataset").private
    assert datasets.load_dataset(DS_REPO, split="train").to_dict() == patched.to_dict()
    assert DatasetCard.load(DS_REPO).data.hf_patchdist["splits"]["train"]["rewriter"] == {"id": REPO}

    (tmp_path / "neither").mkdir()
    with pytest.raises(SystemExit, match="neither a rewriter folder"):
        cli.main(["push", str(tmp_path / "neither"), REPO])


def test_cli_rewrite_push_to_hub(hub, tiny_model_dir, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    from hf_patchdist import cli

    output = tmp_path / "patched"
    code = cli.main(["rewrite", "--model", tiny_model_dir, "--limit", "2", "--max-new-tokens", "4", "--dtype", "float32",
                     "--output", str(output), "--push-to-hub", DS_REPO])
    assert code == 0
    saved = datasets.load_from_disk(str(output))
    assert datasets.load_dataset(DS_REPO, split="train").to_dict() == saved.to_dict()
    statistics = DatasetCard.load(DS_REPO).data.hf_patchdist["splits"]["train"]["patch_statistics"]
    assert statistics == json.loads((output / "patch_statistics.json").read_text())


def test_distribution_patch_trainer_pushes_its_card(hub, tiny_model, tmp_path):
    from huggingface_hub import ModelCard

    from hf_patchdist.generation import StaticBackend
    from hf_patchdist.rewriter import Rewriter
    from hf_patchdist.trainers import DistributionPatchTrainer, DistributionPatchConfig

    from conftest import good_rewrite_for, make_dataset

    model, tokenizer = tiny_model
    repo_id = f"{USER}/tiny-sft"
    args = DistributionPatchConfig(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to="none", use_cpu=True,
                          bf16=False, save_strategy="no", push_to_hub=True, hub_model_id=repo_id,
                          patch_cache_dir=str(tmp_path / "cache"))
    rewriter = Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for), show_progress=False)
    trainer = DistributionPatchTrainer(model=model, args=args, train_dataset=make_dataset("plain"), processing_class=tokenizer, rewriter=rewriter)
    trainer.train()
    trainer.push_to_hub()
    card = ModelCard.load(repo_id)
    assert "hf-patchdist" in card.data.tags
    assert "| rewritten | 4 (100.0%) |" in card.text


def test_rewriter_trainer_pushes_a_loadable_rewriter(hub, tiny_model_dir, tmp_path):

    from hf_patchdist.rewriter import Rewriter
    from hf_patchdist.trainers import RewriterTrainer, RewriterGRPOConfig

    from conftest import make_dataset

    repo_id = f"{USER}/tiny-rewriter"
    args = RewriterGRPOConfig(str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, num_generations=2,
                                  max_completion_length=8, lora_r=2, report_to="none", bf16=False, use_cpu=True,
                                  save_strategy="no", gradient_checkpointing=False, push_to_hub=True, hub_model_id=repo_id)
    trainer = RewriterTrainer(model=tiny_model_dir, args=args, train_dataset=make_dataset("plain"))
    trainer.train()  # push_to_hub=True: the rewriter is pushed at the end of training
    loaded = Rewriter.from_pretrained(repo_id)
    assert loaded.config.has_adapter and loaded.config.training_summary["global_step"] == 1
    assert {"README.md", "rewriter_config.json", "adapter_model.safetensors"} <= set(hub.list_files(repo_id))
