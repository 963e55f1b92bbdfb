"""DistributionPatchTrainer: a drop-in SFTTrainer that trains on patched targets, with an on-disk patch cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from conftest import FORMATS, GOOD_REWRITES, GSM8K_ROWS, good_rewrite_for, make_dataset

from hf_patchdist.formats import detect_dataset_format, read_example
from hf_patchdist.generation import GeneratedText, StaticBackend, TransformersBackend
from hf_patchdist.rewriter import PATCH_COLUMNS, Rewriter
from hf_patchdist.trainers import DistributionPatchTrainer, DistributionPatchConfig

REPO = Path(__file__).resolve().parents[2]
ORIGINALS = [row["answer"] for row in GSM8K_ROWS]
REWRITES = [GOOD_REWRITES[int(answer.split("####")[-1])] for answer in ORIGINALS]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """Each test gets its own datasets cache, so that the default patch cache lives in tmp_path."""
    import datasets

    folder = tmp_path / "datasets_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(folder))
    return folder


def sft_config(tmp_path, cls=None, **overrides):
    from trl import SFTConfig

    cls = cls or SFTConfig
    values = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        max_length=256,
        disable_tqdm=True,
    )
    values.update(overrides)
    return cls(**values)


def trained_text(trainer, row):
    """The tokens of one prepared training row that carry loss, decoded."""
    tokenizer = trainer.processing_class
    return tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])


def fake_generate(record=None):
    """A TransformersBackend.generate that answers with the accepted rewrites (and records what it was given)."""

    def generate(self, prompts, *, num_candidates, settings, stop=None):
        if record is not None:
            lora = sum("lora_" in name for name, _ in self.model.named_modules())
            record.append({"prompts": list(prompts), "model": self.model, "lora_modules": lora, "training": self.model.training})
        return [[GeneratedText(good_rewrite_for(p)) for _ in range(num_candidates)] for p in prompts]

    return generate


# ---------------------------------------------------------------------- the drop-in test
@pytest.mark.parametrize("fmt", FORMATS)
def test_drop_in_replacement_trains_on_the_patched_targets(fmt, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    # SFTTrainer does not read plain question/answer columns by itself; a formatting function does.
    formatting_func = (lambda row: f"Question: {row['question']}\nAnswer: {row['answer']}") if fmt == "plain" else None

    def script(trainer_cls, **extra):
        # --- a user's SFT script; only the class and `rewriter=` change between the two runs ---
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        args = SFTConfig(
            output_dir=str(tmp_path / trainer_cls.__name__), max_steps=2, per_device_train_batch_size=2,
            logging_steps=1, save_strategy="no", report_to="none", bf16=False, gradient_checkpointing=False,
            max_length=256, disable_tqdm=True,
        )
        trainer = trainer_cls(
            model=model, args=args, train_dataset=make_dataset(fmt), processing_class=tokenizer,
            formatting_func=formatting_func, **extra,
        )
        trainer.train()
        return trainer
        # ----------------------------------------------------------------------------------------

    backend = StaticBackend(good_rewrite_for)
    rewriter = Rewriter(tiny_model_dir, backend=backend, show_progress=False)
    baseline = script(SFTTrainer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*same backbone", UserWarning)  # same backbone: no warning about it
        patched = script(DistributionPatchTrainer, rewriter=rewriter)

    assert backend.calls >= 1
    assert patched.state.global_step == baseline.state.global_step == 2
    assert patched.patch_statistics.rewritten == len(GSM8K_ROWS)
    assert len(patched.train_dataset) == len(baseline.train_dataset) == len(GSM8K_ROWS)
    for base_row, patched_row, original, rewrite in zip(baseline.train_dataset, patched.train_dataset, ORIGINALS, REWRITES):
        base_text, patched_text = trained_text(baseline, base_row), trained_text(patched, patched_row)
        assert original in base_text and rewrite not in base_text
        assert rewrite in patched_text and original not in patched_text
    # What the model actually gets: the batches of the train dataloader hold the rewrites, no provenance column.
    batch = next(iter(patched.get_train_dataloader()))
    assert not set(batch) & set(PATCH_COLUMNS)
    labels = batch["labels"][0]
    text = patched.processing_class.decode(batch["input_ids"][0][labels != -100])
    assert any(rewrite in text for rewrite in REWRITES)
    assert not any(original in text for original in ORIGINALS)
    assert not set(patched.train_dataset.column_names) & set(PATCH_COLUMNS)


def test_plain_columns_become_conversational_prompt_completion(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    trainer = DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path), train_dataset=make_dataset("plain"), processing_class=tokenizer,
        rewriter=Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for), show_progress=False),
    )
    row = trainer.train_dataset[0]
    assert row["prompt"] == [{"role": "user", "content": GSM8K_ROWS[0]["question"]}]
    assert row["completion"] == [{"role": "assistant", "content": REWRITES[0]}]
    # completion-only loss: the question is not trained on, the rewrite is
    text = trained_text(trainer, row)
    assert REWRITES[0] in text and GSM8K_ROWS[0]["question"] not in text
    # the patched set keeps its plain format and the provenance columns
    assert trainer.patched_dataset.column_names == ["question", "answer", *PATCH_COLUMNS]
    assert trainer.patched_dataset["answer"] == REWRITES
    assert not set(trainer.train_dataset.column_names) & set(PATCH_COLUMNS)


def test_provenance_columns_never_reach_the_model_even_when_unused_columns_are_kept(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    trainer = DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path, remove_unused_columns=False), train_dataset=make_dataset("messages"),
        processing_class=tokenizer, rewriter=Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for)),
    )
    assert not set(trainer.train_dataset.column_names) & set(PATCH_COLUMNS)
    batch = next(iter(trainer.get_train_dataloader()))
    assert not set(batch) & set(PATCH_COLUMNS)
    trainer.train()


def test_eval_dataset_is_never_rewritten(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    seen: list[str] = []

    def responder(prompt):
        seen.append(prompt)
        return good_rewrite_for(prompt)

    train, evaluation = make_dataset("plain", GSM8K_ROWS[:2]), make_dataset("plain", GSM8K_ROWS[2:])
    trainer = DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path, eval_strategy="steps", eval_steps=1), train_dataset=train,
        eval_dataset=evaluation, processing_class=tokenizer,
        rewriter=Rewriter(model, tokenizer, backend=StaticBackend(responder)),
    )
    assert len(seen) == 2 and not any(row["question"] in p for p in seen for row in GSM8K_ROWS[2:])
    # plain eval rows are turned into prompt-completion like the training rows, with the expert answers
    for row, original in zip(trainer.eval_dataset, ORIGINALS[2:]):
        assert original in trained_text(trainer, row)
    trainer.train()
    assert any("eval_loss" in entry for entry in trainer.state.log_history)


def test_formatting_func_sees_the_patched_plain_rows(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    seen = []

    def formatting_func(row):
        seen.append(set(row))
        return f"Q: {row['question']}\nA: {row['answer']}"

    trainer = DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path), train_dataset=make_dataset("plain"), processing_class=tokenizer,
        formatting_func=formatting_func, rewriter=Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for)),
    )
    assert seen and all(keys == {"question", "answer"} for keys in seen)
    assert REWRITES[0] in trained_text(trainer, trainer.train_dataset[0])


# ---------------------------------------------------------------------- the cache
def build(tmp_path, rewriter, dataset=None, model=None, tokenizer=None, **config):
    return DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path, cls=DistributionPatchConfig, **config), train_dataset=dataset if dataset is not None else make_dataset("plain"),
        processing_class=tokenizer, rewriter=rewriter,
    )


def test_second_construction_reads_the_cache(tiny_model, tmp_path, datasets_cache):
    model, tokenizer = tiny_model
    backend = StaticBackend(good_rewrite_for)
    rewriter = Rewriter(model, tokenizer, backend=backend)
    first = build(tmp_path, rewriter, model=model, tokenizer=tokenizer)
    calls = backend.calls
    assert calls >= 1 and not first.patch_result.from_cache
    # the default location: next to the datasets cache
    assert first.patch_result.path.parent == datasets_cache / "hf_patchdist"
    assert (first.patch_result.path / "patch_info.json").is_file()

    second = build(tmp_path, rewriter, dataset=make_dataset("plain"), model=model, tokenizer=tokenizer)
    assert backend.calls == calls, "the second construction generated again"
    assert second.patch_result.from_cache and second.patch_result.key == first.patch_result.key
    assert second.train_dataset["input_ids"] == first.train_dataset["input_ids"]
    assert second.patch_statistics == first.patch_statistics

    # a Rewriter rebuilt with the same settings (another object, same fingerprint) hits the cache too
    build(tmp_path, Rewriter(model, tokenizer, backend=backend), model=model, tokenizer=tokenizer)
    assert backend.calls == calls


@pytest.mark.parametrize(
    "change",
    ["rewriter_verifier", "rewriter_prompt", "num_candidates", "batch_size", "columns", "data", "no_cache"],
)
def test_changing_the_rewriter_an_option_or_the_data_patches_again(change, tiny_model, tmp_path):
    model, tokenizer = tiny_model
    backend = StaticBackend(good_rewrite_for)
    build(tmp_path, Rewriter(model, tokenizer, backend=backend), model=model, tokenizer=tokenizer)
    calls = backend.calls
    rewriter, dataset, config = Rewriter(model, tokenizer, backend=backend), None, {}
    if change == "rewriter_verifier":
        rewriter = Rewriter(model, tokenizer, backend=backend, verifier="exact")
    elif change == "rewriter_prompt":
        rewriter.config.prompt_template = "Rewrite.\n{question}\n{answer}\nEnd with {final_line}"
    elif change == "num_candidates":
        config = {"patch_num_candidates": 2}
    elif change == "batch_size":
        config = {"patch_batch_size": 2}
    elif change == "columns":
        config = {"patch_question_column": "question", "patch_answer_column": "answer"}
    elif change == "data":
        rows = [dict(row) for row in GSM8K_ROWS]
        rows[3]["question"] += " Answer in pages."
        dataset = make_dataset("plain", rows)
    elif change == "no_cache":
        config = {"patch_use_cache": False}
    trainer = build(tmp_path, rewriter, dataset=dataset, model=model, tokenizer=tokenizer, **config)
    assert backend.calls > calls
    assert not trainer.patch_result.from_cache
    if change == "no_cache":
        assert trainer.patch_result.path is None
        build(tmp_path, Rewriter(model, tokenizer, backend=backend), model=model, tokenizer=tokenizer, patch_use_cache=False)
        assert backend.calls > calls + 1


def test_config_options_override_the_rewriter_without_changing_it(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    rewriter = Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for))
    trainer = build(tmp_path, rewriter, model=model, tokenizer=tokenizer, patch_num_candidates=3, patch_batch_size=2)
    info = json.loads((trainer.patch_result.path / "patch_info.json").read_text())
    assert info["options"]["num_candidates"] == 3 and info["options"]["batch_size"] == 2
    assert info["rewriter_config"]["sampling"]["do_sample"] is True
    assert trainer.rewriter.config.num_candidates == 3 and trainer.rewriter.generation_settings.do_sample
    assert rewriter.config.num_candidates == 1 and rewriter.batch_size == 16  # the user's object is untouched


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from conftest import good_rewrite_for, make_dataset
    from trl import SFTConfig
    from hf_patchdist.generation import StaticBackend
    from hf_patchdist.rewriter import Rewriter
    from hf_patchdist.trainers import DistributionPatchTrainer

    backend = StaticBackend(good_rewrite_for)
    trainer = DistributionPatchTrainer(
        model={model!r},
        args=SFTConfig(output_dir={out!r}, report_to="none", bf16=False, disable_tqdm=True),
        train_dataset=make_dataset("conversational_prompt_completion"),
        rewriter=Rewriter({model!r}, backend=backend, num_candidates=int(sys.argv[1])),
    )
    print(json.dumps({{"calls": backend.calls, "from_cache": trainer.patch_result.from_cache,
                      "key": trainer.patch_result.key, "rewritten": trainer.patch_statistics.rewritten}}))
    """
)


def test_a_fresh_process_reads_the_cache_and_generates_nothing(tiny_model_dir, tmp_path):
    """Two runs of the same script, each in a new Python process, with an in-memory (from_list) data set."""
    script = tmp_path / "train.py"
    script.write_text(
        FRESH_PROCESS_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), model=tiny_model_dir, out=str(tmp_path / "out"))
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets_cache_subprocess")}

    def run(num_candidates):
        done = subprocess.run([sys.executable, str(script), str(num_candidates)], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run(1)
    assert first["calls"] >= 1 and not first["from_cache"] and first["rewritten"] == len(GSM8K_ROWS)
    second = run(1)
    assert second == {**first, "calls": 0, "from_cache": True}
    third = run(2)  # another option: patched again
    assert third["calls"] >= 1 and not third["from_cache"] and third["key"] != first["key"]
    assert (tmp_path / "datasets_cache_subprocess" / "hf_patchdist" / first["key"]).is_dir()


def test_a_broken_cache_entry_is_patched_again(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    backend = StaticBackend(good_rewrite_for)
    first = build(tmp_path, Rewriter(model, tokenizer, backend=backend), model=model, tokenizer=tokenizer)
    for path in first.patch_result.path.glob("*.arrow"):
        path.unlink()
    calls = backend.calls
    second = build(tmp_path, Rewriter(model, tokenizer, backend=backend), model=model, tokenizer=tokenizer)
    assert backend.calls > calls and not second.patch_result.from_cache
    assert second.patched_dataset["answer"] == REWRITES


# ---------------------------------------------------------------------- rewriter=None, names, backbones
def test_without_rewriter_the_prompted_rewriter_runs_on_the_model_being_trained(tiny_model, tmp_path, monkeypatch):
    from peft import LoraConfig, PeftModel

    model, tokenizer = tiny_model
    record: list = []
    monkeypatch.setattr(TransformersBackend, "generate", fake_generate(record))
    trainer = DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path, max_steps=1), train_dataset=make_dataset("messages"), processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    assert record, "no generation"
    # pi_0: the very model object being trained, before PEFT wrapped it and before any step
    assert all(call["model"] is model for call in record)
    assert all(call["lora_modules"] == 0 and not call["training"] for call in record)
    assert isinstance(trainer.model, PeftModel)
    assert trainer.patch_statistics.rewritten == len(GSM8K_ROWS)
    assert "model being trained" in trainer.rewriter_description
    spec = detect_dataset_format(trainer.patched_dataset)
    assert [read_example(row, spec).answer for row in trainer.patched_dataset] == REWRITES
    trainer.train()
    assert trainer.state.global_step == 1


def test_peft_config_trains_an_adapter_on_the_patched_targets(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel

    model, tokenizer = tiny_model
    lora_modules_at_patch_time = []

    def responder(prompt):
        lora_modules_at_patch_time.append(sum("lora_" in name for name, _ in model.named_modules()))
        return good_rewrite_for(prompt)

    trainer = DistributionPatchTrainer(
        model=model, args=sft_config(tmp_path), train_dataset=make_dataset("conversational_prompt_completion"),
        processing_class=tokenizer, rewriter=Rewriter(model, tokenizer, backend=StaticBackend(responder)),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    assert lora_modules_at_patch_time and set(lora_modules_at_patch_time) == {0}, "patched after PEFT wrapped the model"
    assert isinstance(trainer.model, PeftModel)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and all("lora_" in n for n in before)
    trainer.train()
    assert any(not (p.detach() == before[n]).all() for n, p in trainer.model.named_parameters() if n in before)
    assert REWRITES[0] in trained_text(trainer, trainer.train_dataset[0])


def test_model_given_by_name_and_rewriter_none(tiny_model_dir, tmp_path, monkeypatch):
    record: list = []
    monkeypatch.setattr(TransformersBackend, "generate", fake_generate(record))
    trainer = DistributionPatchTrainer(model=tiny_model_dir, args=sft_config(tmp_path, max_steps=1), train_dataset=make_dataset("prompt_completion"))
    assert record and trainer.patch_statistics.rewritten == len(GSM8K_ROWS)
    assert record[0]["model"] is not trainer.model  # the rewriter loaded its own copy by name ...
    assert trainer.rewriter._model is None  # ... and it is not kept in memory for training
    assert trainer.rewriter.config.base_model == tiny_model_dir
    trainer.train()


def test_a_rewriter_on_another_backbone_warns_once(tiny_model, tiny_model_dir, tmp_path):
    model, tokenizer = tiny_model
    other = tmp_path / "other-backbone"
    shutil.copytree(tiny_model_dir, other)
    backend = StaticBackend(good_rewrite_for)
    with pytest.warns(UserWarning, match="paper's setting uses the same backbone"):
        build(tmp_path, Rewriter(str(other), backend=backend), model=model, tokenizer=tokenizer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*same backbone", UserWarning)
        trainer = build(tmp_path, Rewriter(str(other), backend=backend), model=model, tokenizer=tokenizer)
        # the same backbone spelled differently (a loaded model vs. its folder) is no warning either
        build(tmp_path, Rewriter(tiny_model_dir, backend=backend), model=model, tokenizer=tokenizer)
    assert trainer.patch_statistics.rewritten == len(GSM8K_ROWS)


def test_an_already_patched_dataset_is_not_patched_again(tiny_model, tmp_path, monkeypatch):
    model, tokenizer = tiny_model
    patched = make_dataset("plain").map(Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for)), batched=True)
    monkeypatch.setattr(TransformersBackend, "generate", lambda *a, **k: pytest.fail("generated again"))
    trainer = DistributionPatchTrainer(model=model, args=sft_config(tmp_path), train_dataset=patched, processing_class=tokenizer)
    assert trainer.patch_statistics.rewritten == len(GSM8K_ROWS)
    assert REWRITES[0] in trained_text(trainer, trainer.train_dataset[0])
    assert not set(trainer.train_dataset.column_names) & set(PATCH_COLUMNS)


# ---------------------------------------------------------------------- bad input fails at construction
def assert_nothing_trained(tmp_path):
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_a_dataset_without_the_needed_columns_fails_at_construction(tiny_model, tmp_path):
    from datasets import Dataset

    model, tokenizer = tiny_model
    backend = StaticBackend(good_rewrite_for)
    with pytest.raises(ValueError, match=r"cannot patch `train_dataset`.*\['text'\].*Expected a 'messages' column"):
        build(tmp_path, Rewriter(model, tokenizer, backend=backend), dataset=Dataset.from_list([{"text": "hi"}]), model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"\['problem'\] not found"):
        build(tmp_path, Rewriter(model, tokenizer, backend=backend), model=model, tokenizer=tokenizer, patch_question_column="problem")
    with pytest.raises(ValueError, match="empty"):
        build(tmp_path, Rewriter(model, tokenizer, backend=backend), dataset=make_dataset("plain", []), model=model, tokenizer=tokenizer)
    with pytest.raises(TypeError, match="IterableDataset"):
        build(tmp_path, Rewriter(model, tokenizer, backend=backend), dataset=make_dataset("plain").to_iterable_dataset(), model=model, tokenizer=tokenizer)
    assert backend.calls == 0
    assert_nothing_trained(tmp_path)


def test_an_unreachable_rewriter_id_fails_at_construction(tiny_model, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model, tokenizer = tiny_model
    with pytest.raises(OSError, match="someone/no-such-rewriter"):
        build(tmp_path, "someone/no-such-rewriter", model=model, tokenizer=tokenizer)
    assert_nothing_trained(tmp_path)


def test_a_rewriter_folder_without_config_fails_at_construction(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    folder = tmp_path / "not-a-rewriter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="rewriter_config.json"):
        build(tmp_path, str(folder), model=model, tokenizer=tokenizer)
    with pytest.raises(TypeError, match="must be a hf_patchdist.Rewriter"):
        build(tmp_path, 42, model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="patch_batch_size"):
        DistributionPatchConfig(output_dir=str(tmp_path / "out"), patch_batch_size=0, bf16=False)
    assert_nothing_trained(tmp_path)


def test_a_rewriter_folder_is_loaded_by_path(tiny_model, tiny_model_dir, tmp_path, monkeypatch):
    model, tokenizer = tiny_model
    folder = Rewriter(tiny_model_dir).save_pretrained(tmp_path / "my-rewriter")
    monkeypatch.setattr(TransformersBackend, "generate", fake_generate())
    trainer = build(tmp_path, str(folder), model=model, tokenizer=tokenizer)
    assert trainer.patch_statistics.rewritten == len(GSM8K_ROWS)
    assert "`my-rewriter` (local folder)" in trainer.rewriter_description


# ---------------------------------------------------------------------- statistics in logs and the model card
def test_patch_statistics_are_logged_once(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    trainer = build(tmp_path, Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for)), model=model, tokenizer=tokenizer)
    stats = trainer.patch_statistics
    assert (stats.rows, stats.rewritten, stats.fallback) == (4, 4, 0)
    assert stats.target_nll is not None and stats.original_nll is not None
    trainer.train()
    entries = [entry for entry in trainer.state.log_history if "patch/rows" in entry]
    assert len(entries) == 1
    assert entries[0]["step"] == 0 and entries[0]["patch/rewritten"] == 4.0
    assert entries[0]["patch/target_nll"] == pytest.approx(stats.target_nll)
    assert any("loss" in entry for entry in trainer.state.log_history)


def test_model_card_links_the_hub_rewriter_and_holds_the_statistics(hub_env, tiny_model, tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub
    from fixtures.hub_server import USER
    from huggingface_hub import HfApi, ModelCard

    model, tokenizer = tiny_model
    repo_id = f"{USER}/gsm8k-rewriter"
    folder = Rewriter(tiny_model_dir).save_pretrained(tmp_path / "rewriter")
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=str(folder), repo_id=repo_id)

    responses = lambda prompt: good_rewrite_for(prompt) if "Natalia" in prompt else "The answer is 1.\n#### 1"
    monkeypatch.setattr(
        TransformersBackend, "generate",
        lambda self, prompts, *, num_candidates, settings, stop=None: [[GeneratedText(responses(p))] for p in prompts],
    )
    trainer = build(tmp_path, repo_id, model=model, tokenizer=tokenizer)
    trainer.create_model_card(model_name="tiny-gsm8k")
    trainer.create_model_card(model_name="tiny-gsm8k")  # twice: the section is not repeated
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "hf-patchdist" in card.data.tags and "sft" in card.data.tags
    text = card.text
    assert text.count("## Distribution patch (hf-patchdist)") == 1
    # Links follow HF_ENDPOINT, as the Hub cards do (here: the loopback Hub the rewriter came from).
    assert f"[{repo_id}]({huggingface_hub.constants.ENDPOINT}/{repo_id})" in text
    assert "https://huggingface.co/papers/2602.11220" in text
    assert "| rewritten | 1 (25.0%) |" in text and "| fallback | 3 |" in text
    assert "| fallback: wrong_final_answer | 3 |" in text
    assert f"`{trainer.rewriter.fingerprint()}`" in text
    assert text.index("## Distribution patch") < text.index("## Citations")


# ---------------------------------------------------------------------- CLI
def test_cli_sft_patches_trains_and_saves(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from hf_patchdist.cli import main

    monkeypatch.setattr(TransformersBackend, "generate", fake_generate())
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS))
    out = tmp_path / "sft-out"
    argv = ["sft", "--dataset", str(data), "--model", tiny_model_dir, "--output", str(out), "--max-steps", "1",
            "--batch-size", "2", "--max-length", "256", "--logging-steps", "1", "--lora-r", "4"]
    assert main(argv) == 0
    assert "rewritten: 4 (100.0%)" in capsys.readouterr().out
    assert json.loads((out / "patch_statistics.json").read_text())["rewritten"] == 4
    assert (out / "adapter_model.safetensors").is_file()
    assert "## Distribution patch (hf-patchdist)" in (out / "README.md").read_text()
    with pytest.raises(SystemExit, match="--overwrite"):
        main(argv)


# ---------------------------------------------------------------------- several processes
@pytest.mark.slow  # about 60 s on 2 CPUs (two runs, one of them on two processes); `.ci/run` runs it
def test_stage_ii_on_two_processes_generates_each_row_once_and_matches_one_process(tiny_model_dir, tmp_path):
    """accelerate launch, 2 CPU processes (gloo): every row generated once, the same patched set everywhere,
    equal to the one-process result (greedy, float32), the cache written once and then read by every process."""
    script = REPO / "tests" / "scripts" / "stage_ii_under_accelerate.py"
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO)}
    launch = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    runs = {}
    for name, command in (("one", [sys.executable]), ("two", launch)):
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run([*command, str(script), tiny_model_dir, str(folder)], env={**env, "HF_DATASETS_CACHE": str(folder / "ds")},
                              capture_output=True, text=True, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = [json.loads(p.read_text()) for p in sorted(folder.glob("rank-*.json"))]
    (one,), (rank0, rank1) = runs["one"], runs["two"]
    assert (one["processes"], rank0["processes"], rank1["processes"]) == (1, 2, 2)

    def generated(run):
        return [(row["prompt"], row["texts"]) for call in run["generated"] for row in call]

    # 7 rows in batches of 2: rank 0 generates batches 1-2 (4 rows), rank 1 batches 3-4 (3 rows); nobody twice.
    assert [len(call) for call in rank0["generated"]] == [2, 2] and [len(call) for call in rank1["generated"]] == [2, 1]
    assert sorted(generated(rank0) + generated(rank1)) == sorted(generated(one)), "greedy texts as on one process"
    assert len({prompt for prompt, _ in generated(one)}) == 7
    assert rank0["patched"] == rank1["patched"] == one["patched"]
    assert all(row["patch_rejected"] for row in one["patched"]), "the rejected candidates are gathered too"
    assert rank0["trained_on"] == rank1["trained_on"] == one["trained_on"]
    assert rank0["key"] == rank1["key"] == one["key"]
    assert [p.name for p in (tmp_path / "two" / "patch_cache").iterdir()] == [rank0["key"]], "one cache entry, complete"
    assert all(run["second_from_cache"] and run["second_construction_calls"] == 0 for run in (rank0, rank1))


def test_a_rewriter_folder_naming_a_callable_verifier_needs_the_configs_trust_remote_code(tiny_model, tiny_model_dir, probe_module, tmp_path):
    from hf_patchdist.rewriter import RewriterConfig
    from hf_patchdist.verifiers import UntrustedVerifierError

    model, tokenizer = tiny_model
    folder = tmp_path / "rw"
    generation = {"max_new_tokens": 4, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "batch_size": 4}
    RewriterConfig(base_model=tiny_model_dir, verifier={"name": "callable", "callable": probe_module.path}, generation=generation).save(folder)
    with pytest.raises(UntrustedVerifierError, match=f"{probe_module.path}.*trust_remote_code"):
        build(tmp_path, str(folder), model=model, tokenizer=tokenizer, patch_use_cache=False)
    assert not probe_module.imported()
    trainer = build(tmp_path, str(folder), model=model, tokenizer=tokenizer, patch_use_cache=False, trust_remote_code=True)
    assert probe_module.imported() and trainer.rewriter.verifier.to_dict()["callable"] == probe_module.path


def test_rows_without_question_or_answer_are_dropped_from_sft_and_counted(tiny_model, tmp_path):
    from hf_patchdist.patch_statistics import PatchStatistics

    model, tokenizer = tiny_model
    broken = [
        {"question": GSM8K_ROWS[0]["question"], "answer": None},
        {"question": "", "answer": GSM8K_ROWS[1]["answer"]},
        {"question": GSM8K_ROWS[2]["question"], "answer": "   "},
        {"question": None, "answer": GSM8K_ROWS[3]["answer"]},
    ]
    dataset = make_dataset("plain", [*GSM8K_ROWS, *broken])
    with pytest.warns(UserWarning, match=r"4 of 8 training rows have no question or no answer") as record:
        trainer = build(tmp_path, Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for)), dataset, model=model, tokenizer=tokenizer)
    assert len([w for w in record if "no question or no answer" in str(w.message)]) == 1
    assert not [w for w in record if "plain SFT" in str(w.message)], "rewrites were accepted"
    assert len(trainer.train_dataset) == len(GSM8K_ROWS)
    assert all(row["completion"][0]["content"].strip() and row["prompt"][-1]["content"].strip() for row in trainer.train_dataset)
    stats = trainer.patch_statistics
    assert stats.rows == 8 and stats.rewritten == 4 and stats.dropped == 4
    assert stats.to_log_dict()["patch/dropped"] == 4.0 and "dropped from SFT" in stats.summary()
    assert len(trainer.patched_dataset) == 8, "the patched set keeps every row, with its reason"
    assert PatchStatistics.from_dataset(trainer.patched_dataset).dropped == 4


@pytest.mark.parametrize("fmt", ["messages", "conversational_prompt_completion"])
def test_a_set_with_only_empty_rows_is_refused_and_no_accepted_rewrite_warns_plain_sft(fmt, tiny_model, tmp_path):
    model, tokenizer = tiny_model
    with pytest.warns(UserWarning, match=r"No rewrite was accepted for any of the 4 training rows.*plain SFT"):
        trainer = build(tmp_path, Rewriter(model, tokenizer, backend=StaticBackend(lambda p: "I do not know.")), make_dataset(fmt), model=model, tokenizer=tokenizer)
    assert len(trainer.train_dataset) == 4 and trainer.patch_statistics.rewritten == 0
    empty = make_dataset("plain", [{"question": r["question"], "answer": ""} for r in GSM8K_ROWS])
    with pytest.raises(ValueError, match="No training row has both a question and an answer"):
        build(tmp_path, Rewriter(model, tokenizer, backend=StaticBackend(good_rewrite_for)), empty, model=model, tokenizer=tokenizer)
