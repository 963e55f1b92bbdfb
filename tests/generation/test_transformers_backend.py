"""TransformersBackend: its decode loop against ``model.generate``, what it computes, and its fallback.

The conftest tiny model greedily repeats one token whatever its input, so a broken position id or
attention mask would go unnoticed; ``sharp_model`` re-draws its weights at a larger scale, which
makes greedy outputs depend on every token and position of the prompt.
"""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import sharpen_weights

from hf_patchdist.generation import GeneratedText, GenerationSettings, StaticBackend, TransformersBackend
from hf_patchdist.generation.base import accepts_token_limits

QUESTIONS = [
    "Hi",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "Betty is saving money for a new wallet which costs $100.",
    "What is 2 + 2?",
]


def chat_prompts(tokenizer, questions=QUESTIONS):
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]


@pytest.fixture
def sharp_model(tiny_model):
    """The tiny model re-drawn so that greedy outputs depend on every prompt token, position and mask entry."""
    model, tokenizer = tiny_model
    sharpen_weights(model)
    return model, tokenizer


def reference_greedy(model, tokenizer, prompt, max_new_tokens):
    """``model.generate`` on the prompt alone (no padding): its new tokens up to the end-of-sequence token."""
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = model.generate(
        **encoded, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    tokens = output[0, encoded["input_ids"].shape[1] :].tolist()
    eos = model.generation_config.eos_token_id
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


class ForwardRecorder:
    """Wraps ``model.forward`` to record the shape of every input (batch, sequence length)."""

    def __init__(self, model, monkeypatch):
        self.shapes: list[tuple[int, int]] = []
        original = model.forward

        def forward(*args, **kwargs):
            self.shapes.append(tuple(kwargs["input_ids"].shape))
            return original(*args, **kwargs)

        monkeypatch.setattr(model, "forward", forward)

    @property
    def prefills(self):
        return [shape for shape in self.shapes if shape[1] > 1]

    @property
    def decodes(self):
        return [shape[0] for shape in self.shapes if shape[1] == 1]


# ---------------------------------------------------------------------- greedy equals generate
def test_greedy_matches_generate_token_exact_for_mixed_prompt_lengths(sharp_model):
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)
    backend = TransformersBackend(model, tokenizer)
    # batch_size 4 over 6 prompts: two batches, prompts sorted by length, micro-batched prefill.
    out = backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=24, batch_size=4))
    assert backend.last_stats.decode_loop == "cache"
    for prompt, candidates, tokens in zip(prompts, out, backend.last_stats.token_ids):
        expected = reference_greedy(model, tokenizer, prompt, 24)
        assert tokens == [expected]
        assert candidates[0].text == tokenizer.decode(expected, skip_special_tokens=True)
        assert candidates[0].truncated == (len(expected) == 24 and expected[-1] != tokenizer.eos_token_id)


def test_greedy_matches_the_generate_path(sharp_model):
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)
    settings = GenerationSettings(max_new_tokens=20, batch_size=3)
    limits = [20, 5, 12, 1, 17, 9]
    loop = TransformersBackend(model, tokenizer)
    generate = TransformersBackend(model, tokenizer, decode_loop="generate")
    assert loop.generate(prompts, num_candidates=1, settings=settings, max_new_tokens=limits) == generate.generate(
        prompts, num_candidates=1, settings=settings, max_new_tokens=limits
    )
    assert loop.last_stats.token_ids == generate.last_stats.token_ids
    assert generate.last_stats.decode_loop == "generate"


def test_rows_leaving_longest_first_keep_their_own_mask_and_positions(sharp_model):
    """The longest prompts (least padding) get the smallest limits: every row that stays in the batch
    after others left must keep its own mask row, position and cache row."""
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    limits = [0] * len(prompts)
    for rank, index in enumerate(sorted(range(len(prompts)), key=lambda i: -lengths[i])):
        limits[index] = 1 + 4 * rank
    backend = TransformersBackend(model, tokenizer)
    backend.generate(prompts, num_candidates=1, settings=GenerationSettings(batch_size=8), max_new_tokens=limits)
    assert backend.last_stats.decode_batch_sizes == [5] * 4 + [4] * 4 + [3] * 4 + [2] * 4 + [1] * 4
    for prompt, tokens, limit in zip(prompts, backend.last_stats.token_ids, limits):
        assert tokens == [reference_greedy(model, tokenizer, prompt, limit)]


# ---------------------------------------------------------------------- the prefill is shared
def test_candidates_share_one_prefill_per_prompt(sharp_model, monkeypatch):
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)[:4]
    recorder = ForwardRecorder(model, monkeypatch)
    torch.manual_seed(0)
    backend = TransformersBackend(model, tokenizer)
    out = backend.generate(
        prompts, num_candidates=3, settings=GenerationSettings(max_new_tokens=8, do_sample=True, batch_size=4)
    )
    assert [len(candidates) for candidates in out] == [3] * 4
    assert all(isinstance(c, GeneratedText) for candidates in out for c in candidates)
    # Each prompt is prefilled once (not once per candidate), and the decode runs 4 * 3 rows.
    assert sum(batch for batch, _ in recorder.prefills) == 4
    assert backend.last_stats.prefill_forwards == len(recorder.prefills)
    assert recorder.decodes[0] == 12
    # Sampled candidates of one prompt differ.
    assert all(len({tuple(t) for t in tokens}) > 1 for tokens in backend.last_stats.token_ids)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_greedy_candidates_equal_the_single_greedy_candidate(sharp_model, shared_prefix, monkeypatch):
    """K greedy candidates are K copies of the greedy output, whether the K rows of a prompt read its
    keys and values once (shared-prefix attention) or from an expanded cache."""
    model, tokenizer = sharp_model
    if not shared_prefix:
        monkeypatch.setattr(model.config, "model_type", "not-in-the-list")
    prompts = chat_prompts(tokenizer)
    limits = [20, 5, 12, 1, 17, 9]
    backend = TransformersBackend(model, tokenizer)
    settings = GenerationSettings(max_new_tokens=20, batch_size=4)
    backend.generate(prompts, num_candidates=1, settings=settings, max_new_tokens=limits)
    single = backend.last_stats.token_ids
    backend.generate(prompts, num_candidates=3, settings=settings, max_new_tokens=limits)
    assert backend.last_stats.shared_prefix is shared_prefix
    assert backend.last_stats.token_ids == [tokens * 3 for tokens in single]
    assert model.config._attn_implementation == "sdpa"  # switched back after the decode steps
    for prompt, tokens, limit in zip(prompts, single, limits):
        assert tokens == [reference_greedy(model, tokenizer, prompt, limit)]


def test_sampling_follows_temperature(sharp_model):
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)[:2]
    backend = TransformersBackend(model, tokenizer)
    # A temperature near 0 samples the arg-max: the greedy tokens, for every candidate.
    greedy = backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=10))
    greedy_tokens = backend.last_stats.token_ids
    torch.manual_seed(0)
    cold = backend.generate(
        prompts, num_candidates=2, settings=GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1e-4)
    )
    assert [[c.text for c in cs] for cs in cold] == [[g[0].text] * 2 for g in greedy]
    assert backend.last_stats.token_ids == [[t[0]] * 2 for t in greedy_tokens]


@pytest.mark.parametrize("decode_loop", ["cache", "generate"])
def test_sampling_follows_top_k(sharp_model, decode_loop):
    """top_k = 1 at temperature 1 samples the arg-max (without top-k, temperature-1 samples of this model differ)."""
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)[:3]
    backend = TransformersBackend(model, tokenizer, decode_loop=decode_loop)
    backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=10))
    greedy_tokens = backend.last_stats.token_ids
    torch.manual_seed(0)
    backend.generate(prompts, num_candidates=3, settings=GenerationSettings(max_new_tokens=10, do_sample=True, top_k=1))
    assert backend.last_stats.token_ids == [[t[0]] * 3 for t in greedy_tokens]
    torch.manual_seed(0)
    backend.generate(prompts, num_candidates=3, settings=GenerationSettings(max_new_tokens=10, do_sample=True))
    assert backend.last_stats.token_ids != [[t[0]] * 3 for t in greedy_tokens]


def test_top_k_left_out_of_saved_settings_at_its_default():
    """Rewriter configs (and patch-cache fingerprints) saved before top_k existed stay the same."""
    assert "top_k" not in GenerationSettings().to_dict()
    assert GenerationSettings(top_k=20).to_dict()["top_k"] == 20
    assert GenerationSettings(**GenerationSettings(top_k=20).to_dict()) == GenerationSettings(top_k=20)


# ---------------------------------------------------------------------- finished rows leave
def test_finished_rows_leave_the_batch(sharp_model, monkeypatch):
    model, tokenizer = sharp_model
    model.generation_config.eos_token_id = len(tokenizer) - 1  # never generated here: only the limits end rows
    prompts = chat_prompts(tokenizer)[:3]
    recorder = ForwardRecorder(model, monkeypatch)
    backend = TransformersBackend(model, tokenizer)
    backend.generate(prompts, num_candidates=1, settings=GenerationSettings(batch_size=8), max_new_tokens=[2, 5, 9])
    # The first token comes from the prefill; a row with limit n needs n - 1 decode steps.
    assert recorder.decodes == [3, 2, 2, 2, 1, 1, 1, 1]
    assert backend.last_stats.decode_batch_sizes == recorder.decodes
    assert [len(t[0]) for t in backend.last_stats.token_ids] == [2, 5, 9]


def test_token_limits_per_prompt_and_truncation(sharp_model):
    model, tokenizer = sharp_model
    model.generation_config.eos_token_id = len(tokenizer) - 1
    prompts = chat_prompts(tokenizer)[:3]
    backend = TransformersBackend(model, tokenizer)
    out = backend.generate(
        prompts, num_candidates=2, settings=GenerationSettings(max_new_tokens=50, do_sample=True), max_new_tokens=[1, 4, 7]
    )
    assert [[len(t) for t in tokens] for tokens in backend.last_stats.token_ids] == [[1, 1], [4, 4], [7, 7]]
    assert all(c.truncated for candidates in out for c in candidates)
    # Without per-prompt limits, settings.max_new_tokens applies to every prompt.
    backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=3))
    assert [len(t[0]) for t in backend.last_stats.token_ids] == [3, 3, 3]
    with pytest.raises(ValueError, match="3 prompts"):
        backend.generate(prompts, num_candidates=1, settings=GenerationSettings(), max_new_tokens=[4, 4])


def test_end_of_sequence_is_not_truncation(sharp_model):
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)
    backend = TransformersBackend(model, tokenizer)
    greedy = backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=24))
    first = [tokens[0][0] for tokens in backend.last_stats.token_ids]
    # Make the first greedy token of the first prompt the end-of-sequence token: that row ends at once.
    model.generation_config.eos_token_id = first[0]
    out = backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=1))
    assert backend.last_stats.token_ids[0] == [[first[0]]]
    assert out[0][0].truncated is False
    assert all(c[0].truncated for c, f in zip(out, first) if f != first[0])
    assert greedy[0][0].text  # (the unchanged model wrote something)


def test_stop_function_ends_rows_like_the_generate_path(tiny_model):
    model, tokenizer = tiny_model  # greedily writes newlines: the stop below fires after the third
    prompts = chat_prompts(tokenizer)[:3]

    def stop(text):
        return len(text) if text.count("\n") >= 3 else None

    settings = GenerationSettings(max_new_tokens=30, batch_size=2)
    loop = TransformersBackend(model, tokenizer)
    out = loop.generate(prompts, num_candidates=1, settings=settings, stop=stop)
    generate = TransformersBackend(model, tokenizer, decode_loop="generate")
    assert generate.generate(prompts, num_candidates=1, settings=settings, stop=stop) == out
    for candidates, tokens in zip(out, loop.last_stats.token_ids):
        assert stop(candidates[0].text) is not None and stop(tokenizer.decode(tokens[0][:-1])) is None
        assert not candidates[0].truncated
        assert len(tokens[0]) < 30
    # Without the stop function the rows run to the limit and are truncated.
    out = loop.generate(prompts, num_candidates=1, settings=settings)
    assert all(c[0].truncated for c in out) and [len(t[0]) for t in loop.last_stats.token_ids] == [30] * 3


# ---------------------------------------------------------------------- the escape hatch
def test_fallback_to_generate_for_options_the_loop_does_not_apply(sharp_model, caplog, monkeypatch):
    model, tokenizer = sharp_model
    prompts = chat_prompts(tokenizer)[:3]
    model.generation_config.repetition_penalty = 1.3
    recorder = ForwardRecorder(model, monkeypatch)
    backend = TransformersBackend(model, tokenizer)
    with caplog.at_level(logging.WARNING, logger="hf_patchdist.generation.transformers_backend"):
        out = backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=6))
    assert backend.last_stats.decode_loop == "generate"
    assert "repetition_penalty" in backend.fallback_reason and "repetition_penalty" in caplog.text
    assert recorder.shapes and recorder.shapes[0][1] > 1  # generate ran (its own prefill)
    explicit = TransformersBackend(model, tokenizer, decode_loop="generate")
    assert explicit.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=6)) == out


def test_fallback_when_the_cache_cannot_drop_rows(tiny_model_dir, caplog):
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=8, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()  # sliding-window cache layers: not driven by the loop
    prompts = chat_prompts(tokenizer)[:2]
    backend = TransformersBackend(model, tokenizer)
    with caplog.at_level(logging.WARNING, logger="hf_patchdist.generation.transformers_backend"):
        out = backend.generate(prompts, num_candidates=2, settings=GenerationSettings(max_new_tokens=4, do_sample=True))
    assert backend.last_stats.decode_loop == "generate"
    assert "DynamicSlidingWindowLayer" in backend.fallback_reason and "model.generate" in caplog.text
    assert [len(c) for c in out] == [2, 2]
    # The decision is remembered: the next call goes straight to generate.
    backend.generate(prompts, num_candidates=1, settings=GenerationSettings(max_new_tokens=2))
    assert backend.last_stats.decode_loop == "generate"


def test_decode_loop_name_is_checked(tiny_model):
    with pytest.raises(ValueError, match="decode_loop"):
        TransformersBackend(*tiny_model, decode_loop="fast")


# ---------------------------------------------------------------------- the Rewriter's token limits
def test_length_groups():
    from hf_patchdist.generation.base import length_groups

    assert length_groups([5, 100, 98, 6, 97]) == [[1, 2, 4], [3, 0]]  # longest first, little padding
    assert length_groups([10, 9, 8, 7], max_rows=2) == [[0, 1], [2, 3]]
    assert length_groups([300] * 5, max_tokens=900) == [[0, 1, 2], [3, 4]]
    assert length_groups([2000, 10], max_tokens=900) == [[0], [1]]
    assert length_groups([]) == []


def test_token_limit_rule():
    settings = GenerationSettings()
    assert settings.token_limit(60) == 122  # ceil(1.5 * 60 + 32)
    assert settings.token_limit(400) == settings.max_new_tokens == 320
    assert GenerationSettings(length_multiple=None).token_limit(60) == 320
    assert GenerationSettings(length_multiple=2.0, length_margin=0, max_new_tokens=50).token_limit(7) == 14


def test_rewriter_passes_limits_from_the_expert_answers(tiny_model):
    from conftest import good_rewrite_for, make_dataset

    from hf_patchdist.rewriter import Rewriter
    from hf_patchdist.rewriter.config import strip_calculator_annotations

    model, tokenizer = tiny_model
    backend = StaticBackend(good_rewrite_for)
    rewriter = Rewriter(model, tokenizer, backend=backend, show_progress=False)
    dataset = make_dataset("plain")
    dataset.map(rewriter, batched=True)
    expected = [
        min(320, -(-3 * len(tokenizer(strip_calculator_annotations(a).strip(), add_special_tokens=False)["input_ids"]) // 2) + 32)
        for a in dataset["answer"]
    ]
    assert backend.last_max_new_tokens == expected
    assert rewriter.token_limits([]) == []
    # The rule can be switched off: every example then gets max_new_tokens (no per-prompt list).
    rewriter.config.generation = {**rewriter.config.generation, "length_multiple": None}
    dataset.map(rewriter, batched=True, load_from_cache_file=False)
    assert backend.last_max_new_tokens is None


def test_rewriter_accepts_a_backend_without_per_prompt_limits(tiny_model):
    from conftest import good_rewrite_for, make_dataset

    from hf_patchdist.generation.base import GenerationBackend
    from hf_patchdist.rewriter import Rewriter

    class OldBackend(GenerationBackend):  # written before generate took max_new_tokens
        def generate(self, prompts, *, num_candidates, settings, stop=None):
            return [[GeneratedText(good_rewrite_for(p))] * num_candidates for p in prompts]

    assert not accepts_token_limits(OldBackend())
    assert accepts_token_limits(StaticBackend(["x"]))
    model, tokenizer = tiny_model
    patched = make_dataset("plain").map(Rewriter(model, tokenizer, backend=OldBackend(), show_progress=False), batched=True)
    assert set(patched["patch_source"]) == {"rewrite"}
