"""Generation backends by name: the names, the errors, the default."""

from __future__ import annotations

import pytest

from hf_patchdist.generation import TransformersBackend
from hf_patchdist.generation.registry import BACKEND_ENV, BACKEND_NAMES, backend_from_name, check_backend_name, default_backend
from hf_patchdist.import_utils import is_openvino_genai_available
from hf_patchdist.rewriter import Rewriter


def test_unknown_name_lists_the_backends():
    with pytest.raises(ValueError, match="'llamacpp'.*transformers, vllm, ctranslate2"):
        check_backend_name("llamacpp")
    with pytest.raises(ValueError, match="Unknown generation backend"):
        Rewriter("smollm2-135m-instruct", backend="llamacpp")
    assert BACKEND_NAMES[0] == "transformers"


def test_transformers_by_name_takes_its_options(tiny_model):
    model, tokenizer = tiny_model
    backend = backend_from_name("transformers", model, tokenizer, decode_loop="generate")
    assert isinstance(backend, TransformersBackend) and backend.decode_loop == "generate"


@pytest.mark.parametrize("name", ["vllm", "ctranslate2", "openvino"])
def test_engines_that_load_their_own_weights_refuse_a_loaded_model(tiny_model, name):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="by name or folder"):
        backend_from_name(name, model, tokenizer)
    with pytest.raises(ValueError, match="by name or folder"):
        Rewriter(model, tokenizer, backend=name, show_progress=False).backend


def test_rewriter_backend_by_name_defaults_to_transformers(tiny_model_dir):
    rewriter = Rewriter(tiny_model_dir, backend="transformers", backend_options={"decode_loop": "generate"}, show_progress=False)
    assert isinstance(rewriter.backend, TransformersBackend) and rewriter.backend.decode_loop == "generate"
    assert rewriter.fingerprint() == Rewriter(tiny_model_dir, show_progress=False).fingerprint()


def test_command_line_selects_the_backend_by_name():
    from hf_patchdist.cli.common import build_rewriter
    from hf_patchdist.cli.main import build_parser

    argv = ["rewrite", "--output", "out", "--backend", "ctranslate2", "--compute-type", "int8"]
    rewriter = build_rewriter(build_parser().parse_args(argv), "smollm2-135m-instruct")
    assert rewriter.backend_name == "ctranslate2" and rewriter.backend_options == {"compute_type": "int8"}
    argv = ["rewrite", "--output", "out", "--backend", "openvino", "--inference-precision", "bf16"]
    rewriter = build_rewriter(build_parser().parse_args(argv), "smollm2-135m-instruct")
    assert rewriter.backend_name == "openvino" and rewriter.backend_options == {"inference_precision": "bf16"}
    default = build_rewriter(build_parser().parse_args(["rewrite", "--output", "out"]), "smollm2-135m-instruct")
    assert default.backend_name is None and default.backend_options == {}


def test_default_backend_takes_openvino_on_cpu_only_where_it_can(tiny_model_dir, monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr("hf_patchdist.import_utils.is_openvino_genai_available", lambda: True)
    name, options = default_backend(tiny_model_dir, "cpu", {})
    assert name == "openvino" and options["inference_precision"] in ("bf16", "f32")
    # A loaded model (the policy of a training run), a GPU, or options meant for another backend: transformers.
    assert default_backend(None, "cpu", {}) == ("transformers", {})
    assert default_backend(tiny_model_dir, "cuda:0", {}) == ("transformers", {})
    assert default_backend(tiny_model_dir, "cpu", {"decode_loop": "generate"})[0] == "transformers"
    monkeypatch.setattr("hf_patchdist.import_utils.is_openvino_genai_available", lambda: False)
    assert default_backend(tiny_model_dir, "cpu", {})[0] == "transformers"
    monkeypatch.setenv(BACKEND_ENV, "ctranslate2")
    assert default_backend(tiny_model_dir, "cpu", {})[0] == "ctranslate2"


def test_default_backend_refuses_what_the_gguf_reader_cannot_rebuild(tmp_path, monkeypatch):
    from transformers import GPT2Config

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr("hf_patchdist.import_utils.is_openvino_genai_available", lambda: True)
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    assert default_backend(str(tmp_path), "cpu", {})[0] == "transformers"


@pytest.mark.skipif(not is_openvino_genai_available(), reason="openvino-genai is not installed")
def test_a_rewriter_without_a_backend_uses_openvino_and_still_hashes(tiny_model_dir, monkeypatch, tmp_path):
    from datasets.fingerprint import Hasher

    from hf_patchdist.generation.openvino_backend import OpenVINOBackend

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # the converted model goes to the hf-patchdist cache: keep it here
    rewriter = Rewriter(tiny_model_dir, show_progress=False)
    before = rewriter.fingerprint()  # builds the backend it will generate with, so the hash never changes later
    assert isinstance(rewriter.backend, OpenVINOBackend)
    assert before == rewriter.fingerprint() != Rewriter(tiny_model_dir, backend="transformers", show_progress=False).fingerprint()
    assert Hasher.hash(rewriter)  # datasets pickles the mapped function: the engine is dropped, not pickled
