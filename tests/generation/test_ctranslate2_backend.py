"""CTranslate2Backend against TransformersBackend on a tiny Llama: greedy agreement, stops, limits, candidates, adapters.

The model is the ``sharp_model_dir`` of ``tests/generation/conftest.py`` (outputs depend on the prompt,
frequent newlines). Skipped where CTranslate2 is not installed.
"""

from __future__ import annotations

import pytest
import torch

from hf_patchdist.generation import GenerationSettings, TransformersBackend

from .conftest import first_line_end

ctranslate2 = pytest.importorskip("ctranslate2")

from hf_patchdist.generation.ctranslate2_backend import CTranslate2Backend, is_converted_model  # noqa: E402


@pytest.fixture(scope="module")
def ct2_backend(sharp_model_dir, tmp_path_factory):
    return CTranslate2Backend(sharp_model_dir, compute_type="float32", cache_dir=tmp_path_factory.mktemp("ct2-cache"))


def test_greedy_float32_matches_transformers_backend(sharp_model, ct2_backend, prompts):
    model, tokenizer = sharp_model
    settings = GenerationSettings(max_new_tokens=24, batch_size=4)
    expected = TransformersBackend(model, tokenizer).generate(prompts, num_candidates=1, settings=settings)
    got = ct2_backend.generate(prompts, num_candidates=1, settings=settings)
    assert [row[0].text for row in got] == [row[0].text for row in expected]
    assert [row[0].truncated for row in got] == [row[0].truncated for row in expected]
    assert len({row[0].text for row in got}) == len(prompts)  # the outputs depend on the prompt


def test_stops_at_the_final_answer_line_as_transformers_does(sharp_model, ct2_backend, prompts):
    model, tokenizer = sharp_model
    settings = GenerationSettings(max_new_tokens=120, batch_size=4)
    free = ct2_backend.generate(prompts, num_candidates=1, settings=settings)
    free_tokens = [row[0] for row in ct2_backend.last_token_ids]
    stopped = ct2_backend.generate(prompts, num_candidates=1, settings=settings, stop=first_line_end)
    assert sum(first_line_end(row[0].text) is not None for row in free) >= 3, "the test needs rows that a line ends"
    for free_row, tokens, row, new_tokens in zip(free, free_tokens, stopped, ct2_backend.last_token_ids):
        if first_line_end(free_row[0].text) is None:
            assert row[0].text == free_row[0].text
            continue
        text = row[0].text
        assert first_line_end(text) is not None and not row[0].truncated
        assert first_line_end(tokenizer.decode(new_tokens[0][:-1], skip_special_tokens=True)) is None  # ended on the token
        assert new_tokens[0] == tokens[: len(new_tokens[0])] and len(new_tokens[0]) < len(tokens)
    expected = TransformersBackend(model, tokenizer).generate(prompts, num_candidates=1, settings=settings, stop=first_line_end)
    assert [row[0].text for row in stopped] == [row[0].text for row in expected]


def test_per_prompt_token_limits(ct2_backend, prompts):
    limits = [3, 9, 5, 1, 12, 4]
    settings = GenerationSettings(max_new_tokens=50, batch_size=4)
    got = ct2_backend.generate(prompts, num_candidates=2, settings=settings, max_new_tokens=limits)
    got_tokens = ct2_backend.last_token_ids
    full = ct2_backend.generate(prompts, num_candidates=1, settings=settings)
    full_tokens = [row[0] for row in ct2_backend.last_token_ids]
    assert [[len(t) for t in row] for row in got_tokens] == [[min(limit, len(t))] * 2 for limit, t in zip(limits, full_tokens)]
    for row, tokens, limit, reference in zip(got, got_tokens, limits, full_tokens):
        assert tokens == [reference[:limit]] * 2  # greedy: the same tokens, cut at the limit
        assert all(candidate.truncated is (len(reference) > limit) for candidate in row)
    assert all(len(t) == 50 for t in full_tokens) and all(row[0].truncated for row in full)
    with pytest.raises(ValueError, match="6 prompts"):
        ct2_backend.generate(prompts, num_candidates=1, settings=settings, max_new_tokens=[3, 4])


def test_candidates_per_prompt(ct2_backend, prompts):
    greedy = ct2_backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=12))
    repeated = ct2_backend.generate(prompts, num_candidates=3, settings=GenerationSettings(max_new_tokens=12))
    assert [[c.text for c in row] for row in repeated] == [[row[0].text] * 3 for row in greedy]
    sampling = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=2.0)
    sampled = ct2_backend.generate(prompts, num_candidates=4, settings=sampling)
    assert [len(row) for row in sampled] == [4] * len(prompts)
    assert all(len({c.text for c in row}) > 1 for row in sampled)  # sampled candidates differ
    assert ct2_backend.generate(prompts, num_candidates=4, settings=sampling) != sampled
    top_1 = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=2.0, top_k=1)
    assert ct2_backend.generate(prompts, num_candidates=2, settings=top_1) == [[row[0]] * 2 for row in greedy]


def test_seed_makes_sampling_repeatable(ct2_backend, prompts):
    sampling = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=2.0)
    runs = []
    for seed in (3, 3, 4):
        backend = CTranslate2Backend(ct2_backend.model_path, compute_type="float32", seed=seed)
        runs.append([backend.generate(prompts, num_candidates=2, settings=sampling) for _ in range(2)])
    assert runs[0] == runs[1] and runs[0][0] != runs[0][1]  # the same sequence of calls, not the same call twice
    assert runs[2] != runs[0]


def test_adapter_is_merged_and_converted_once(sharp_model_dir, sharp_model, prompts, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    from hf_patchdist.models import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(sharp_model_dir, dtype="float32", device="cpu")
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    cache = tmp_path / "cache"
    settings = GenerationSettings(max_new_tokens=16, batch_size=4)

    first = CTranslate2Backend(sharp_model_dir, adapter=adapter, compute_type="float32", cache_dir=cache)
    assert first.converted and is_converted_model(first.model_path)
    got = first.generate(prompts, num_candidates=1, settings=settings)

    base, tokenizer = load_model_and_tokenizer(sharp_model_dir, dtype="float32", device="cpu")
    with_adapter = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    expected = TransformersBackend(with_adapter, tokenizer).generate(prompts, num_candidates=1, settings=settings)
    assert [row[0].text for row in got] == [row[0].text for row in expected]
    plain = TransformersBackend(*sharp_model).generate(prompts, num_candidates=1, settings=settings)
    assert [row[0].text for row in got] != [row[0].text for row in plain]  # the adapter changed the outputs

    second = CTranslate2Backend(sharp_model_dir, adapter=adapter, compute_type="float32", cache_dir=cache)
    assert not second.converted and second.model_path == first.model_path
    assert second.fingerprint() == first.fingerprint()
    without = CTranslate2Backend(sharp_model_dir, compute_type="float32", cache_dir=cache)
    assert without.converted and without.model_path != first.model_path
    assert without.fingerprint() != first.fingerprint()
    assert len([p for p in cache.iterdir()]) == 2  # no staging folders left behind


def test_converted_folder_loads_directly_and_refuses_an_adapter(ct2_backend, prompts, tmp_path):
    settings = GenerationSettings(max_new_tokens=8)
    direct = CTranslate2Backend(ct2_backend.model_path, compute_type="float32")
    assert not direct.converted
    assert direct.generate(prompts, num_candidates=1, settings=settings) == ct2_backend.generate(
        prompts, num_candidates=1, settings=settings
    )
    with pytest.raises(ValueError, match="already converted"):
        CTranslate2Backend(ct2_backend.model_path, adapter=tmp_path)


def test_rewriter_selects_it_by_name_and_rewrites_as_transformers_does(sharp_model_dir, tmp_path):
    import pickle

    from conftest import make_dataset

    from hf_patchdist.rewriter import Rewriter

    options = {"compute_type": "float32", "cache_dir": tmp_path / "cache"}
    common = {"dtype": "float32", "device": "cpu", "show_progress": False, "question_column": "question", "answer_column": "answer"}
    by_name = Rewriter(sharp_model_dir, backend="ctranslate2", backend_options=options, **common)
    default = Rewriter(sharp_model_dir, **common)
    assert isinstance(by_name.backend, CTranslate2Backend) and by_name.backend.compute_type == "float32"
    assert by_name.fingerprint() != default.fingerprint()  # its patch-cache entries are its own
    assert pickle.loads(pickle.dumps(by_name))._backend is None  # rebuilt from its name in a worker
    by_name.config.keep_rejected = default.config.keep_rejected = True  # the candidates' texts, to compare
    dataset = make_dataset("plain")
    ours, theirs = by_name.rewrite(dataset, load_from_cache_file=False), default.rewrite(dataset, load_from_cache_file=False)
    assert all(row for row in ours["patch_rejected"])  # the tiny model's candidates are all refused...
    for column in ("answer", "patch_source", "patch_reason", "patch_rejected"):
        assert ours[column] == theirs[column]  # ...and they are the same texts


def test_rewrite_command_with_the_ctranslate2_backend(sharp_model_dir, tmp_path, monkeypatch, capsys):
    import json

    from conftest import GSM8K_ROWS
    from datasets import load_from_disk

    from hf_patchdist.cli import main

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # the converted model goes under it
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS))
    out = tmp_path / "patched"
    argv = ["rewrite", "--dataset", str(data), "--model", sharp_model_dir, "--output", str(out), "--dtype", "float32"]
    assert main([*argv, "--max-new-tokens", "8", "--backend", "ctranslate2", "--compute-type", "float32"]) == 0
    assert load_from_disk(str(out))["patch_source"] == ["fallback"] * len(GSM8K_ROWS)
    assert len(list((tmp_path / "hf_home" / "hf_patchdist" / "ctranslate2").iterdir())) == 1
