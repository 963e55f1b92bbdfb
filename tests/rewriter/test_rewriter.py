import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from conftest import FORMATS, GOOD_REWRITES, GSM8K_ROWS, good_rewrite_for, make_dataset

from hf_patchdist.formats import detect_dataset_format, read_example
from hf_patchdist.generation import StaticBackend
from hf_patchdist.rewriter import PATCH_COLUMNS, REWRITER_CONFIG_NAME, Rewriter, RewriterConfig
from hf_patchdist.patch_statistics import PatchStatistics


def make_rewriter(tiny_model, responses, **kwargs):
    model, tokenizer = tiny_model
    return Rewriter(model, tokenizer, backend=StaticBackend(responses), show_progress=False, **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batched", [True, False])
def test_map_rewrites_every_format_and_keeps_it(tiny_model, fmt, batched):
    dataset = make_dataset(fmt)
    rewriter = make_rewriter(tiny_model, good_rewrite_for)
    patched = dataset.map(rewriter, batched=batched, batch_size=3)
    assert patched.column_names == dataset.column_names + list(PATCH_COLUMNS)
    for name, feature in dataset.features.items():
        assert patched.features[name] == feature, f"column {name} changed type"
    spec = detect_dataset_format(dataset)
    assert patched["patch_source"] == ["rewrite"] * len(dataset)
    assert patched["patch_reason"] == [""] * len(dataset)
    for row, original in zip(patched, GSM8K_ROWS):
        example = read_example(row, spec)
        expected = GOOD_REWRITES[int(original["answer"].split("####")[-1])]
        assert example.answer == expected != original["answer"]
        assert example.question == original["question"]
        assert row["patch_nll_original"] > 0 and row["patch_nll_kept"] > 0
        assert row["patch_nll_kept"] != row["patch_nll_original"]


@pytest.mark.parametrize(
    "response,reason",
    [
        ("The answer is 72.\n#### 72", "no_reasoning"),
        ("She sold 48/2 = 20 clips in May, so 48 + 24 = 72 in all.\n#### 72", "wrong_equation"),
        ("Here is the original solution in other words: 48/2 = 24 and 48 + 24 = 72.\n#### 72", "mentions_rewriting"),
        ("She sold 48/2 = 24 clips in May, and 48 + 24 = 70 clips in all, which rounds to 72.\n#### 72", "wrong_equation"),
        ("She sold 48/2 = 24 clips in May, and 48 + 20 = 68 clips in all.\n#### 68", "wrong_final_answer"),
        ("", "empty"),
        ("She sold 48/2 = 24 clips<truncated>", "truncated"),
    ],
)
def test_rejected_rewrites_fall_back_with_their_reason(tiny_model, response, reason):
    dataset = make_dataset("plain", GSM8K_ROWS[:1])
    patched = dataset.map(make_rewriter(tiny_model, [response]), batched=True)
    assert patched["patch_source"] == ["fallback"]
    assert patched["patch_reason"] == [reason]
    assert patched["answer"] == [GSM8K_ROWS[0]["answer"]]
    assert patched["patch_nll_kept"] == patched["patch_nll_original"]


def test_echoed_instruction_is_rejected(tiny_model):
    # An echo of the instruction's last sentences, which hold no meta phrase ("in your own words",
    # "reference solution" are checked first and would answer mentions_rewriting instead).
    worked = "She sold 48/2 = 24 clips in May and 48 + 24 = 72 clips in all."
    echo = f"{worked} Write every calculation as an equation. End with the final answer on its own line.\n#### 72"
    rewriter = make_rewriter(tiny_model, [echo])
    assert rewriter.verifier._meta_phrase_in(echo) is None, "the echo must reach the echo check"
    patched = make_dataset("plain", GSM8K_ROWS[:1]).map(rewriter, batched=True)
    assert patched["patch_reason"] == ["echoes_instruction"]
    assert patched["patch_source"] == ["fallback"]
    # The same reasoning without the echoed sentences is accepted: the echo alone decides.
    plain = make_dataset("plain", GSM8K_ROWS[:1]).map(make_rewriter(tiny_model, [f"{worked}\n#### 72"]), batched=True)
    assert plain["patch_source"] == ["rewrite"]


def test_trailing_text_is_trimmed(tiny_model):
    text = GOOD_REWRITES[72] + "\nSolve the question step by step in your own words. Question: more text"
    patched = make_dataset("plain", GSM8K_ROWS[:1]).map(make_rewriter(tiny_model, [text]), batched=True)
    assert patched["patch_source"] == ["rewrite"]
    assert patched["answer"] == [GOOD_REWRITES[72]]


def test_bad_rows_fall_back_and_the_others_are_rewritten(tiny_model):
    rewriter = make_rewriter(tiny_model, good_rewrite_for)
    batch = {
        "question": [GSM8K_ROWS[0]["question"], "q2", "q3", "q4", GSM8K_ROWS[1]["question"], None],
        "answer": [GSM8K_ROWS[0]["answer"], None, "", 42, GSM8K_ROWS[1]["answer"], "#### 3"],
    }
    batch["answer"][3] = 42  # non-string value
    out = rewriter(batch)
    assert out["patch_source"] == ["rewrite", "fallback", "fallback", "fallback", "rewrite", "fallback"]
    assert out["patch_reason"][1:4] == ["missing_answer", "empty_answer", "non_string_answer"]
    assert out["patch_reason"][5] == "missing_question"
    assert out["answer"][1:4] == [None, "", 42], "fallback rows keep their original value"
    assert len(out["answer"]) == 6


def test_answer_without_final_answer_falls_back(tiny_model):
    rows = [{"question": "Say hi.", "answer": "Hello there, friend!"}, GSM8K_ROWS[0]]
    patched = make_dataset("plain", rows).map(make_rewriter(tiny_model, good_rewrite_for), batched=True)
    assert patched["patch_source"] == ["fallback", "rewrite"]
    assert patched["patch_reason"][0] == "reference_without_final_answer"


def test_missing_column_names_it_and_the_formats(tiny_model):
    from datasets import Dataset

    dataset = Dataset.from_list([{"text": "hello"}])
    with pytest.raises(ValueError, match="messages"):
        dataset.map(make_rewriter(tiny_model, ["x"]), batched=True)
    rewriter = make_rewriter(tiny_model, ["x"], question_column="problem", answer_column="solution")
    with pytest.raises(ValueError, match="problem"):
        make_dataset("plain").map(rewriter, batched=True)


def test_best_feasible_candidate_has_lowest_nll(tiny_model):
    from hf_patchdist.scoring import QAScorer, render_qa_prompt

    model, tokenizer = tiny_model
    good_b = "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72"
    rewriter = make_rewriter(tiny_model, lambda prompt: ["The answer is 72.\n#### 72", GOOD_REWRITES[72], good_b], num_candidates=3)
    patched = make_dataset("plain", GSM8K_ROWS[:1]).map(rewriter, batched=True)
    nll = QAScorer(model, tokenizer).score([render_qa_prompt(tokenizer, GSM8K_ROWS[0]["question"])] * 2, [GOOD_REWRITES[72], good_b]).nll
    expected = GOOD_REWRITES[72] if nll[0] < nll[1] else good_b
    assert patched["answer"] == [expected]
    assert patched["patch_nll_kept"][0] == pytest.approx(min(nll), abs=1e-4)


def test_statistics_of_a_patched_set(tiny_model):
    responses = lambda prompt: good_rewrite_for(prompt) if "Natalia" in prompt or "Weng" in prompt else "The answer is 5.\n#### 5"
    patched = make_dataset("plain").map(make_rewriter(tiny_model, responses), batched=True)
    stats = PatchStatistics.from_dataset(patched)
    assert (stats.rows, stats.rewritten, stats.fallback) == (4, 2, 2)
    assert stats.fallback_reasons == {"no_reasoning": 1, "wrong_final_answer": 1}
    kept = patched["patch_nll_kept"]
    assert stats.target_nll == pytest.approx(sum(kept) / 4)
    assert stats.accepted_nll == pytest.approx((kept[0] + kept[1]) / 2)
    assert "rewritten | 2 (50.0%)" in stats.to_markdown()


def test_save_and_load_roundtrip(tiny_model, tiny_model_dir, tmp_path):
    rewriter = Rewriter(tiny_model_dir, num_candidates=2, question_column="question", answer_column="answer")
    rewriter.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / REWRITER_CONFIG_NAME).read_text())
    assert saved["base_model"] == tiny_model_dir
    assert saved["num_candidates"] == 2 and saved["verifier"]["name"] == "math"
    loaded = Rewriter.from_pretrained(tmp_path, backend=StaticBackend(good_rewrite_for))
    assert loaded.config == RewriterConfig.from_dict(saved)
    same = Rewriter.from_pretrained(tmp_path, question_column="question", answer_column="answer")
    assert same.fingerprint() == rewriter.fingerprint()
    card = (tmp_path / "README.md").read_text()
    assert "hf-patchdist" in card and "Rewriter.from_pretrained" in card


def test_save_pretrained_writes_the_rewriters_card_over_peft_template_but_keeps_a_users_card(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from hf_patchdist.models import load_model_and_tokenizer

    adapter = tmp_path / "adapter"
    model, _ = load_model_and_tokenizer(tiny_model_dir, dtype="float32", device="cpu")
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    rewriter = Rewriter(tiny_model_dir, adapter=str(adapter), dtype="float32", device="cpu")
    saved = rewriter.save_pretrained(tmp_path / "saved")
    card = (saved / "README.md").read_text()
    assert "[More Information Needed]" not in card  # PEFT's blank template is replaced
    assert "hf-patchdist" in card and (saved / "adapter_model.safetensors").is_file()

    own = tmp_path / "own"
    own.mkdir()
    (own / "README.md").write_text("# my notes\n")
    rewriter.save_pretrained(own)
    assert "# my notes" in (own / "README.md").read_text()


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="rewriter_config.json"):
        Rewriter.from_pretrained(tmp_path)


def test_unreachable_hub_id_gives_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="someone/no-such-rewriter"):
        Rewriter.from_pretrained("someone/no-such-rewriter")
    with pytest.raises(OSError, match="someone/no-such-model"):
        Rewriter("someone/no-such-model").tokenizer


def test_pickling_drops_the_loaded_model(tiny_model_dir):
    rewriter = Rewriter(tiny_model_dir, show_progress=False)
    fingerprint = rewriter.fingerprint()
    size_before = len(pickle.dumps(rewriter))
    _ = rewriter.model
    assert len(pickle.dumps(rewriter)) == size_before
    assert pickle.loads(pickle.dumps(rewriter)).fingerprint() == fingerprint


def test_fingerprint_changes_with_options(tiny_model_dir):
    base = Rewriter(tiny_model_dir).fingerprint()
    assert Rewriter(tiny_model_dir).fingerprint() == base
    assert Rewriter(tiny_model_dir, num_candidates=2).fingerprint() != base
    assert Rewriter(tiny_model_dir, verifier="exact").fingerprint() != base
    assert Rewriter(tiny_model_dir, question_column="q", answer_column="a").fingerprint() != base


def test_with_options_changes_selection_and_candidates_on_a_copy(tiny_model_dir):
    rewriter = Rewriter(tiny_model_dir)
    assert rewriter.with_options(require_lower_nll=False, num_candidates=1) is rewriter  # nothing changes
    stricter = rewriter.with_options(num_candidates=4, require_lower_nll=True)
    assert (stricter.config.num_candidates, stricter.config.require_lower_nll) == (4, True)
    assert (rewriter.config.num_candidates, rewriter.config.require_lower_nll) == (1, False)
    assert stricter.fingerprint() != rewriter.with_options(num_candidates=4).fingerprint()  # cached apart


# GSM8K train rows 843, 844, 856, 878, 882 and 964, which the prompted rewriter (the embedded SmolLM2-135M,
# no adapter) rewrote and the gate accepted in benchmarks/results/rewriter_vs_prompted_examples.json (docs/results.md,
# "Trained vs. prompted rewriter"): still accepted by today's gate.
REWRITABLE_ROWS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "gsm8k_train_rewritable.jsonl"


@pytest.mark.slow
def test_real_default_model_rewrites_gsm8k():
    rows = [json.loads(line) for line in REWRITABLE_ROWS.read_text().splitlines()]
    rewriter = Rewriter(show_progress=False)
    patched = make_dataset("plain", rows).map(rewriter, batched=True)
    accepted = [i for i, source in enumerate(patched["patch_source"]) if source == "rewrite"]
    assert accepted, f"no row rewritten: {patched['patch_reason']}"
    for i in accepted:
        assert patched["answer"][i] != rows[i]["answer"]
        assert patched["answer"][i].strip().endswith(rows[i]["answer"].strip().splitlines()[-1]), "the same final line"
    assert set(patched["patch_source"]) <= {"rewrite", "copy", "fallback"}
    assert all(r == "" for s, r in zip(patched["patch_source"], patched["patch_reason"]) if s in ("rewrite", "copy"))
    assert all(r for s, r in zip(patched["patch_source"], patched["patch_reason"]) if s == "fallback")
    assert all(v > 0 for v in patched["patch_nll_original"])


# Rows 0-1 are rewritten; row 2 gets a bare answer (no_reasoning), row 3 a wrong final answer.
def _half_feasible(prompt):
    if "Natalia" in prompt or "Weng" in prompt:
        return good_rewrite_for(prompt)
    return "The answer is 5.\n#### 5"


@pytest.mark.parametrize("fmt", FORMATS)
def test_provenance_columns_with_fallbacks_on_every_format(tiny_model, fmt):
    dataset = make_dataset(fmt)
    patched = dataset.map(make_rewriter(tiny_model, _half_feasible), batched=True, batch_size=3)
    assert patched.column_names == dataset.column_names + list(PATCH_COLUMNS)
    for name, feature in dataset.features.items():
        assert patched.features[name] == feature, f"column {name} changed type"
    assert patched["patch_source"] == ["rewrite", "rewrite", "fallback", "fallback"]
    assert patched["patch_reason"] == ["", "", "no_reasoning", "wrong_final_answer"]
    spec = detect_dataset_format(dataset)
    for i, (row, before, original) in enumerate(zip(patched, dataset, GSM8K_ROWS)):
        example = read_example(row, spec)
        assert example.question == original["question"]
        assert row["patch_nll_original"] > 0
        if i < 2:
            assert example.answer == GOOD_REWRITES[int(original["answer"].split("####")[-1])]
            assert row["patch_nll_kept"] != row["patch_nll_original"]
        else:
            assert {k: row[k] for k in dataset.column_names} == before, "a fallback row is left exactly as it was"
            assert row["patch_nll_kept"] == row["patch_nll_original"]


INVALID_ROWS = [{"question": "Say hi.", "answer": "Hello there, friend!"}, {"question": "Is it far?", "answer": "It depends on the road."}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_batch_with_no_valid_row_falls_back_and_the_other_batch_is_rewritten(tiny_model, fmt):
    dataset = make_dataset(fmt, INVALID_ROWS + GSM8K_ROWS[:2])
    patched = dataset.map(make_rewriter(tiny_model, good_rewrite_for), batched=True, batch_size=2)
    assert len(patched) == 4, "nothing is dropped"
    assert patched["patch_source"] == ["fallback", "fallback", "rewrite", "rewrite"]
    assert patched["patch_reason"][:2] == ["reference_without_final_answer"] * 2
    spec = detect_dataset_format(dataset)
    assert [read_example(row, spec).answer for row in patched] == [r["answer"] for r in INVALID_ROWS] + [GOOD_REWRITES[72], GOOD_REWRITES[10]]
    assert all(v > 0 for v in patched["patch_nll_original"])


def test_a_batch_of_missing_answers_keeps_its_rows(tiny_model):
    rows = [{"question": "q1", "answer": None}, {"question": "q2", "answer": None}, *GSM8K_ROWS[:2]]
    dataset = make_dataset("plain", rows)
    patched = dataset.map(make_rewriter(tiny_model, good_rewrite_for), batched=True, batch_size=2)
    assert len(patched) == 4
    assert patched["patch_source"] == ["fallback", "fallback", "rewrite", "rewrite"]
    assert patched["patch_reason"][:2] == ["missing_answer", "missing_answer"]
    assert patched["answer"] == [None, None, GOOD_REWRITES[72], GOOD_REWRITES[10]]
    assert all(math.isnan(v) for v in patched["patch_nll_original"][:2] + patched["patch_nll_kept"][:2]), "no score: NaN, a float"
    assert all(v > 0 for v in patched["patch_nll_original"][2:])
    assert PatchStatistics.from_dataset(patched).original_nll == pytest.approx(sum(patched["patch_nll_original"][2:]) / 2)


def _recording_loader(tiny_model, record_dir):
    """A stand-in for load_model_and_tokenizer: the tiny CPU model, with the device it was asked for written down."""
    import os

    def load(name, *, device=None, **kwargs):
        (record_dir / f"device-{os.getpid()}-{len(list(record_dir.iterdir()))}").write_text(str(device))
        return tiny_model

    return load


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_map_with_rank_places_worker_k_on_gpu_k(tiny_model, tiny_model_dir, tmp_path, monkeypatch, gpus):
    import torch

    import hf_patchdist.rewriter.rewriter as rewriter_module

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(rewriter_module, "load_model_and_tokenizer", _recording_loader(tiny_model, tmp_path))
    rewriter = Rewriter(tiny_model_dir, backend=StaticBackend(good_rewrite_for), show_progress=False)
    rewriter(make_dataset("plain")[:2], 1)  # what map(batched=True, with_rank=True) calls in worker 1
    assert rewriter.device == ("cuda:1" if gpus == 2 else None), "CPU and one GPU keep the default device"
    assert [p.read_text() for p in tmp_path.iterdir()] == [str(rewriter.device)]
    mapped = Rewriter(tiny_model_dir, backend=StaticBackend(good_rewrite_for), show_progress=False)
    make_dataset("plain").map(mapped, batched=True, with_rank=True)  # one process: datasets passes rank None
    assert mapped.device is None


def test_rewrite_with_num_proc_passes_the_rank(tiny_model, monkeypatch):
    """Workers of a num_proc map must learn their rank (a forked torch worker cannot run here: 2 CPUs, OpenMP)."""
    from datasets import Dataset

    seen = {}
    monkeypatch.setattr(Dataset, "map", lambda self, function, **kwargs: seen.update(kwargs))
    rewriter = make_rewriter(tiny_model, good_rewrite_for)
    rewriter.rewrite(make_dataset("plain"), num_proc=2)
    assert seen["with_rank"] is True and seen["batched"] is True
    seen.clear()
    rewriter.rewrite(make_dataset("plain"))
    assert "with_rank" not in seen


def test_a_copy_of_the_expert_answer_is_labelled_copy_and_counted_apart(tiny_model):
    def copy_or_rewrite(prompt):
        if "Natalia" in prompt:  # the expert answer without its annotations: feasible, but no rewrite
            return "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
        return good_rewrite_for(prompt) if "Weng" in prompt else "The answer is 5.\n#### 5"

    patched = make_dataset("plain").map(make_rewriter(tiny_model, copy_or_rewrite), batched=True)
    assert patched["patch_source"] == ["copy", "rewrite", "fallback", "fallback"]
    stats = PatchStatistics.from_dataset(patched)
    assert (stats.rows, stats.rewritten, stats.copied, stats.fallback) == (4, 1, 1, 2)
    assert stats.acceptance_rate == 0.25
    assert stats.accepted_nll == pytest.approx(patched["patch_nll_kept"][1]), "a copy is no accepted rewrite"
    assert stats.fallback_reasons == {"no_reasoning": 1, "wrong_final_answer": 1}
    assert "| copy of the expert answer (annotations removed) | 1 |" in stats.to_markdown()
    assert "copies: 1" in stats.summary()
    assert stats.to_log_dict()["patch/copied"] == 1.0


def test_keep_rejected_keeps_each_rejected_candidate_across_batches(tiny_model):
    from hf_patchdist.rewriter import REJECTED_COLUMN

    def candidates(prompt):
        if "Natalia" in prompt or "Weng" in prompt:  # first batch: every candidate feasible, nothing rejected
            return [good_rewrite_for(prompt)] * 2
        return ["The answer is 5.\n#### 5", good_rewrite_for(prompt)]

    config = RewriterConfig(keep_rejected=True)
    rewriter = make_rewriter(tiny_model, candidates, config=config, num_candidates=2)
    dataset = make_dataset("plain")
    # An all-empty batch, then struct lists: map cannot infer the type of the first, rewrite() passes it.
    patched = rewriter.rewrite(dataset, batch_size=2)
    assert patched.features[REJECTED_COLUMN] == rewriter.output_features(dataset)[REJECTED_COLUMN]
    with_features = dataset.map(rewriter, batched=True, batch_size=2, features=rewriter.output_features(dataset))
    assert with_features[REJECTED_COLUMN] == patched[REJECTED_COLUMN]
    assert patched.column_names == dataset.column_names + list(PATCH_COLUMNS) + [REJECTED_COLUMN]
    rejected = patched[REJECTED_COLUMN]
    assert rejected[:2] == [[], []]
    assert [len(r) for r in rejected[2:]] == [1, 1], "the feasible candidate of each row is not listed"
    first = rejected[2][0]
    assert first["text"] == "The answer is 5.\n#### 5" and first["reason"] == "no_reasoning" and first["detail"]
    assert rejected[3][0]["reason"] == "wrong_final_answer"
    assert patched["patch_source"] == ["rewrite"] * 4
    # Off by default: no extra column.
    plain = dataset.map(make_rewriter(tiny_model, candidates, num_candidates=2), batched=True, batch_size=2)
    assert REJECTED_COLUMN not in plain.column_names


# ---------------------------------------------------------------------------------------------- trust_remote_code


def test_a_callable_verifier_from_a_config_needs_trust_remote_code(tiny_model, tiny_model_dir, probe_module, tmp_path):
    from hf_patchdist.verifiers import UntrustedVerifierError

    model, tokenizer = tiny_model
    entry = {"name": "callable", "callable": probe_module.path}
    with pytest.raises(UntrustedVerifierError, match=f"{probe_module.path}.*trust_remote_code"):
        Rewriter(model, tokenizer, config=RewriterConfig(verifier=entry))
    with pytest.raises(UntrustedVerifierError):
        Rewriter(model, tokenizer, verifier=entry)
    folder = tmp_path / "rw"
    RewriterConfig(base_model=tiny_model_dir, verifier=entry).save(folder)
    with pytest.raises(UntrustedVerifierError, match=f"rewriter_config.json of {folder}.*Nothing was imported"):
        Rewriter.from_pretrained(folder, show_progress=False)
    assert not probe_module.imported()

    rewriter = Rewriter.from_pretrained(folder, trust_remote_code=True, show_progress=False, dtype="float32", device="cpu")
    assert probe_module.imported() and rewriter.verifier.to_dict()["callable"] == probe_module.path
    assert rewriter.trust_remote_code


def test_a_verifier_function_given_in_python_needs_no_opt_in(tiny_model):
    model, tokenizer = tiny_model

    def last_word_matches(candidate, reference):
        return candidate.split()[-1] == reference.split()[-1]

    rewriter = Rewriter(model, tokenizer, verifier=last_word_matches, backend=StaticBackend(lambda p: "so it is 72"), show_progress=False)
    patched = make_dataset("plain", [{"question": "q?", "answer": "it is 72"}]).map(rewriter, batched=True)
    assert patched["patch_source"] == ["rewrite"]
    assert rewriter.with_options(batch_size=2).verifier.fn is last_word_matches


# ---------------------------------------------------------------------------------------------- length limits


@pytest.fixture
def short_context_model(tiny_model_dir):
    """The tiny model with a 256-token context: GSM8K row 2's rewriting prompt (215 tokens) leaves 41 tokens,
    fewer than its 68-token expert answer; the other rows' prompts (165-170 tokens) leave 86-91."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, max_position_embeddings=256, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def test_rows_that_cannot_fit_the_context_are_too_long_and_limits_stay_inside_it(short_context_model):
    model, tokenizer = short_context_model
    backend = StaticBackend(good_rewrite_for)
    rewriter = Rewriter(model, tokenizer, backend=backend, show_progress=False)
    patched = make_dataset("plain").map(rewriter, batched=True)
    assert patched["patch_reason"] == ["", "", "too_long", ""]
    assert patched["patch_source"] == ["rewrite", "rewrite", "fallback", "rewrite"]
    assert patched["answer"][2] == GSM8K_ROWS[2]["answer"]
    # Rows 0, 1 and 3 only, each limit min(1.5 x expert + 32, the room the context leaves after the prompt).
    spec = detect_dataset_format(make_dataset("plain"))
    examples = [read_example(row, spec) for row in GSM8K_ROWS]
    rooms = [256 - len(tokenizer(rewriter.build_prompt(e), add_special_tokens=False)["input_ids"]) for e in examples]
    limits = rewriter.token_limits(examples)
    assert [room < limit for room, limit in zip(rooms, limits)] == [True] * 4, "the context, not the rule, decides"
    assert backend.last_max_new_tokens == [rooms[0], rooms[1], rooms[3]]
    assert PatchStatistics.from_dataset(patched).fallback_reasons == {"too_long": 1}


def test_a_cap_below_the_expert_answer_is_too_long_not_truncated(tiny_model):
    model, tokenizer = tiny_model
    cut = StaticBackend(lambda p: "She sold 48/2 = 24 clips<truncated>")
    for cap, reason in ((40, "too_long"), (320, "truncated")):  # the expert answers have 44-68 tokens
        config = RewriterConfig(generation={"max_new_tokens": cap, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "batch_size": 4})
        patched = make_dataset("plain").map(Rewriter(model, tokenizer, config=config, backend=cut, show_progress=False), batched=True)
        assert patched["patch_reason"] == [reason] * 4


def test_scoring_stops_at_the_models_context(short_context_model):
    from hf_patchdist.scoring import QAScorer, render_qa_prompt

    model, tokenizer = short_context_model
    scorer = QAScorer(model, tokenizer)
    assert scorer.max_length == 256
    prompt = render_qa_prompt(tokenizer, "What is 2+3?")
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    long_answer = "2+3=5. " * 200
    out = scorer.score([prompt, prompt, "word " * 300], [long_answer, "#### 5", "#### 5"])
    assert out.num_tokens[0] == 256 - prompt_tokens and not math.isnan(out.nll[0])
    assert out.num_tokens[1] == len(tokenizer("#### 5", add_special_tokens=False)["input_ids"])
    assert out.num_tokens[2] == 0 and math.isnan(out.nll[2]), "a prompt that fills the context leaves nothing to score"
    assert QAScorer(model, tokenizer, max_length=10**6).score([prompt], [long_answer]).num_tokens[0] > 256 - prompt_tokens


class RecordingBackend(StaticBackend):
    """A StaticBackend that remembers the settings of its last call."""

    def generate(self, prompts, *, num_candidates, settings, **kwargs):
        self.last_settings = settings
        return super().generate(prompts, num_candidates=num_candidates, settings=settings, **kwargs)


def test_best_of_k_samples_with_its_own_settings_and_one_candidate_stays_greedy(tiny_model):
    model, tokenizer = tiny_model
    backend = RecordingBackend(good_rewrite_for)
    make_dataset("plain", GSM8K_ROWS[:1]).map(Rewriter(model, tokenizer, backend=backend, show_progress=False), batched=True)
    assert backend.last_settings.do_sample is False
    config = RewriterConfig(sampling={"do_sample": True, "temperature": 0.7, "top_p": 0.9})
    rewriter = Rewriter(model, tokenizer, backend=backend, config=config, num_candidates=4, show_progress=False)
    make_dataset("plain", GSM8K_ROWS[:1]).map(rewriter, batched=True)
    settings = backend.last_settings
    assert (settings.do_sample, settings.temperature, settings.top_p) == (True, 0.7, 0.9)
    assert settings.max_new_tokens == config.generation["max_new_tokens"], "what sampling does not name comes from generation"
    assert rewriter.config.generation["do_sample"] is False, "the greedy settings are not overwritten"


def test_several_greedy_candidates_are_refused_with_the_field_to_change(tiny_model):
    rewriter = make_rewriter(tiny_model, good_rewrite_for, config=RewriterConfig(sampling={"do_sample": False}), num_candidates=3)
    with pytest.raises(ValueError, match=r"sampling\['do_sample'\]"):
        make_dataset("plain", GSM8K_ROWS[:1]).map(rewriter, batched=True)


def test_each_row_counts_its_feasible_candidates(tiny_model):
    def candidates(prompt):
        if "Natalia" in prompt:
            return [good_rewrite_for(prompt), "The answer is 72.\n#### 72", good_rewrite_for(prompt)]
        return ["The answer is 5.\n#### 5"] * 3

    patched = make_dataset("plain").map(make_rewriter(tiny_model, candidates, num_candidates=3), batched=True)
    assert patched["patch_num_feasible"] == [2, 0, 0, 0]
    stats = PatchStatistics.from_dataset(patched)
    assert stats.feasible_per_row == pytest.approx(0.5) and stats.rows_with_feasible == 1
    assert "feasible candidates per row: 0.50 (1 rows with one)" in stats.summary()


def test_require_lower_nll_keeps_the_expert_answer_when_every_rewrite_is_further_from_pi0(tiny_model):
    from hf_patchdist.rewriter.candidates import HIGHER_NLL_THAN_EXPERT

    def two(prompt):
        text = good_rewrite_for(prompt)
        return [text, text.replace(" ", "  ", 1)]

    dataset = make_dataset("plain")
    free = dataset.map(make_rewriter(tiny_model, two, num_candidates=2), batched=True)
    strict = dataset.map(make_rewriter(tiny_model, two, num_candidates=2, require_lower_nll=True), batched=True)
    assert free["patch_source"] == ["rewrite"] * 4
    for loose, row in zip(free, strict):
        closer = loose["patch_nll_kept"] < loose["patch_nll_original"]
        assert row["patch_source"] == ("rewrite" if closer else "fallback")
        assert row["patch_reason"] == ("" if closer else HIGHER_NLL_THAN_EXPERT)
        assert row["answer"] == (loose["answer"] if closer else dict(zip(dataset["question"], dataset["answer"]))[row["question"]])
        assert row["patch_num_feasible"] == 2
    # The tiny random model puts some rewrites above and some below their expert answers: both branches ran.
    assert len(set(strict["patch_source"])) == 2, strict["patch_nll_kept"]
