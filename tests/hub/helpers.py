"""Shared pieces of the Hub tests: repo names, loading and generating with a rewriter, a patched set."""

from __future__ import annotations


from conftest import good_rewrite_for, make_dataset
from fixtures.hub_server import USER

from hf_patchdist.generation import StaticBackend
from hf_patchdist.rewriter import Rewriter

REPO = f"{USER}/gsm8k-rewriter"
DS_REPO = f"{USER}/gsm8k-patched"
REWRITER_REPO_FILES = [".gitattributes", "README.md", "adapter_config.json", "adapter_model.safetensors",
                       "rewriter_config.json"]
# Short greedy generation: the tiny random model only needs to produce *some* deterministic text.
GENERATION = {"max_new_tokens": 6, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "batch_size": 4}


def load(name_or_path, **kwargs) -> Rewriter:
    kwargs = {"dtype": "float32", "device": "cpu", "show_progress": False, "batch_size": 4, **kwargs}
    return Rewriter.from_pretrained(name_or_path, **kwargs)


def generate(rewriter: Rewriter, dataset) -> list[str]:
    from hf_patchdist.formats import detect_dataset_format, read_example

    spec = detect_dataset_format(dataset)
    prompts = [rewriter.build_prompt(read_example(row, spec)) for row in dataset]
    out = rewriter.backend.generate(prompts, num_candidates=1, settings=rewriter.generation_settings)
    return [candidates[0].text for candidates in out]


def patched_with_static_backend(tiny_model):
    """A patched GSM8K set with two rewrites and two fallbacks (fast, deterministic)."""
    model, tokenizer = tiny_model
    responses = lambda p: good_rewrite_for(p) if "Natalia" in p or "Weng" in p else "The answer is 5.\n#### 5"  # noqa: E731
    rewriter = Rewriter(model, tokenizer, backend=StaticBackend(responses), show_progress=False)
    return make_dataset("plain").map(rewriter, batched=True), rewriter


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def commit_sha(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
