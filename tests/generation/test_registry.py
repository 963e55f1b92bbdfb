"""Generation backends by name: the names, the errors, the default."""

from __future__ import annotations

import pytest

from hf_patchdist.generation import TransformersBackend
from hf_patchdist.generation.registry import BACKEND_NAMES, backend_from_name, check_backend_name
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
