"""Model cards of rewriters and data set cards of patched data sets, built offline (no Hub needed)."""

from __future__ import annotations

from huggingface_hub import DatasetCard, ModelCard

from hf_patchdist.hub.cards import (
    CARD_BEGIN,
    CARD_END,
    PATCH_COLUMN_DESCRIPTIONS,
    build_patched_dataset_card,
    build_rewriter_card,
    hub_base_model,
    rewriter_record,
)
from hf_patchdist.rewriter import PATCH_COLUMNS, RewriterConfig
from hf_patchdist.patch_statistics import PatchStatistics

EMBEDDED = dict(base_model="smollm2-135m-instruct", base_model_hub_original="HuggingFaceTB/SmolLM2-135M-Instruct")
STATS = PatchStatistics(rows=4, rewritten=3, fallback=1, fallback_reasons={"no_reasoning": 1}, acceptance_rate=0.75,
                        original_nll=0.74, target_nll=0.5, accepted_nll=0.44, accepted_original_nll=0.7)


def test_rewriter_card_metadata_and_text():
    summary = {"steps": 40, "num_generations": 5, "final_mean_reward": 1.234567, "acceptance_rate": 0.81,
               "dataset": "openai/gsm8k", "license": "apache-2.0"}
    config = RewriterConfig(**EMBEDDED, has_adapter=True, training_summary=summary)
    card = ModelCard(str(build_rewriter_card(config, "org/rw", fingerprint="0123abcd")))  # parses back
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct", "the Hub original of the embedded alias"
    assert card.data.library_name == "hf-patchdist"
    assert card.data.tags[:2] == ["hf-patchdist", "rewriter"] and {"peft", "lora"} <= set(card.data.tags)
    assert card.data.datasets == ["openai/gsm8k"] and card.data.license == "apache-2.0"
    assert 'Rewriter.from_pretrained("org/rw")' in card.text
    assert "patched = dataset.map(rewriter, batched=True" in card.text
    assert "| steps | 40 |" in card.text and "| num_generations | 5 |" in card.text
    assert "| final_mean_reward | 1.235 |" in card.text and "lambda_dist = 0.35" in card.text
    assert "| license |" not in card.text, "metadata keys are not repeated in the table"
    assert "`0123abcd`" in card.text and "https://arxiv.org/abs/2602.11220" in card.text


def test_the_card_says_how_the_adapter_was_trained():
    grpo = build_rewriter_card(RewriterConfig(**EMBEDDED, has_adapter=True, training_summary={"global_step": 90}))
    assert "trained with GRPO" in grpo.text and "RFT" not in grpo.text
    rft = {"global_step": 0, "rft": {"rows": 1024, "rewritten_rows": 126, "sampled_by": "runs/round-2"}}
    card = build_rewriter_card(RewriterConfig(**EMBEDDED, has_adapter=True, training_summary=rft))
    assert "RFT) alone, without GRPO steps" in card.text and "trained with GRPO" not in card.text
    assert "| rft/rewritten_rows | 126 |" in card.text
    warm = build_rewriter_card(RewriterConfig(**EMBEDDED, has_adapter=True, training_summary={**rft, "global_step": 30}))
    assert "as a warm start, then GRPO" in warm.text


def test_prompted_rewriter_card_and_explicit_license():
    config = RewriterConfig(base_model="org/base-model")
    card = build_rewriter_card(config, "org/rw", license="mit")
    assert card.data.base_model == "org/base-model" and card.data.license == "mit"
    assert "prompted-rewrite" in card.data.tags and "lora" not in card.data.tags
    assert card.data.datasets is None
    assert "no trained adapter" in card.text


def test_hub_base_model(tmp_path):
    assert hub_base_model(RewriterConfig(**EMBEDDED)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model(RewriterConfig(base_model="smollm2-135m-instruct")) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model(RewriterConfig(base_model="org/model")) == "org/model"
    assert hub_base_model(RewriterConfig(base_model=str(tmp_path))) is None
    card = build_rewriter_card(RewriterConfig(base_model=str(tmp_path / "my-model")), "org/rw")
    assert card.data.base_model is None and str(tmp_path) not in str(card) and "`my-model`" in card.text


def test_every_provenance_column_is_described():
    assert set(PATCH_COLUMN_DESCRIPTIONS) == set(PATCH_COLUMNS)


def test_dataset_card_merges_into_the_datasets_readme():
    readme = (
        "---\ndataset_info:\n  splits:\n  - name: train\n    num_examples: 4\nconfigs:\n- config_name: default\n"
        "  data_files:\n  - split: train\n    path: data/train-*\ntags:\n- math\n---\n\nNotes by the author.\n"
    )
    card = build_patched_dataset_card({"train": STATS}, "org/patched", rewriter="org/rw", existing=DatasetCard(readme))
    again = DatasetCard(str(card))  # what DatasetCard.load would read back
    assert list(again.data.to_dict())[:2] == ["dataset_info", "configs"], "datasets' metadata kept, in its order"
    assert again.data.configs[0]["data_files"][0]["path"] == "data/train-*"
    assert again.data.tags[0] == "math" and "hf-patchdist" in again.data.tags
    entry = again.data.hf_patchdist["splits"]["train"]
    assert PatchStatistics(**entry["patch_statistics"]) == STATS and entry["rewriter"] == {"id": "org/rw"}
    assert "Notes by the author." in again.text and STATS.to_markdown() in again.text
    assert "/org/rw)" in again.text

    other = PatchStatistics(rows=1, rewritten=0, fallback=1, fallback_reasons={"truncated": 1})
    merged = DatasetCard(str(build_patched_dataset_card({"test": other}, "org/patched", existing=again)))
    assert set(merged.data.hf_patchdist["splits"]) == {"train", "test"}
    assert merged.text.count(CARD_BEGIN) == merged.text.count(CARD_END) == 1
    assert merged.text.count("Notes by the author.") == 1 and "### Split `test`" in merged.text
    assert merged.data.hf_patchdist["splits"]["test"]["rewriter"] is None
    assert "Rewriter: not recorded" in merged.text


def test_rewriter_record_of_a_rewriter_object(tiny_model_dir):
    from hf_patchdist.rewriter import Rewriter

    rewriter = Rewriter(tiny_model_dir, num_candidates=2)
    record = rewriter_record(rewriter)
    assert record["id"] is None, "made in this process, not loaded from the Hub: nothing to link"
    assert record["num_candidates"] == 2 and record["adapter"] is False
    assert record["fingerprint"] == rewriter.fingerprint() and tiny_model_dir not in str(record)
    rewriter.source = "org/rw"
    assert rewriter_record(rewriter)["id"] == "org/rw"
    rewriter.source = tiny_model_dir
    assert rewriter_record(rewriter)["id"] is None
    assert rewriter_record("./local/folder") == {"id": None}
