"""The LLM judge (`hf_patchdist.judge`) and its place in the gate of the rewards."""

from __future__ import annotations

import pytest
import torch
from conftest import GOOD_REWRITES, GSM8K_ROWS

from hf_patchdist.judge import DEFAULT_JUDGE_TEMPLATE, LLMJudge
from hf_patchdist.rewards import PatchReward, TaskConsistencyReward
from hf_patchdist.scoring import QAScorer

QUESTIONS = [GSM8K_ROWS[0]["question"], GSM8K_ROWS[1]["question"], "What is 2+3?"]
REFERENCES = [GSM8K_ROWS[0]["answer"], GSM8K_ROWS[1]["answer"], "2+3=5\n#### 5"]
CANDIDATES = [GOOD_REWRITES[72], "The answer is 11.\n#### 11", "Two plus three is 2+3=5.\n#### 5"]


def p_yes_by_hand(model, tokenizer, question, reference, candidate):
    """p(YES) / (p(YES) + p(NO)) of the next token, one unpadded prompt, written out here."""
    text = DEFAULT_JUDGE_TEMPLATE.format(question=question, reference=reference, candidate=candidate)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
    first = lambda words: sorted({tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words})  # noqa: E731
    yes = probs[first(["YES", " YES", "Yes", " Yes"])].sum()
    no = probs[first(["NO", " NO", "No", " No"])].sum()
    return float(yes / (yes + no))


def test_probabilities_are_the_yes_share_of_the_next_token(tiny_model):
    model, tokenizer = tiny_model
    judge = LLMJudge(threshold=0.5, batch_size=2)  # 3 prompts of different lengths: a padded batch and a lone one
    judge.bind(model, tokenizer)
    got = judge.probabilities(QUESTIONS, REFERENCES, CANDIDATES)
    expected = [p_yes_by_hand(model, tokenizer, *item) for item in zip(QUESTIONS, REFERENCES, CANDIDATES)]
    assert got == pytest.approx(expected, abs=1e-5)
    assert all(0 < p < 1 for p in got)
    assert tokenizer.padding_side == judge.tokenizer.padding_side, "the tokenizer's padding side is restored"
    # The verdict is the probability against the threshold.
    cut = sorted(got)[1]
    judge.threshold = cut
    assert judge(QUESTIONS, REFERENCES, CANDIDATES) == [p >= cut for p in got]
    assert judge.to_dict() == {"model": None, "threshold": cut, "template": DEFAULT_JUDGE_TEMPLATE}


def test_a_judge_without_a_model_says_so():
    with pytest.raises(RuntimeError, match="bind"):
        LLMJudge().probabilities(["q"], ["r"], ["c"])


def test_the_judge_is_pi0_with_the_adapter_disabled(tiny_model):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_model
    judge = LLMJudge()
    judge.bind(model, tokenizer)
    base = judge.probabilities(QUESTIONS, REFERENCES, CANDIDATES)

    torch.manual_seed(3)
    policy = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    inputs = tokenizer(["Hello there"], return_tensors="pt")
    with torch.no_grad():
        on = policy(**inputs).logits
        with policy.disable_adapter():
            off = policy(**inputs).logits
    assert not torch.allclose(on, off), "the adapter changes the model"
    on_policy = LLMJudge()
    on_policy.bind(policy, tokenizer)
    assert on_policy.probabilities(QUESTIONS, REFERENCES, CANDIDATES) == pytest.approx(base, abs=1e-5)


class RecordingJudge(LLMJudge):
    """The real judge, recording which candidates it was asked about."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked = []

    def __call__(self, questions, references, candidates):
        self.asked += list(candidates)
        return super().__call__(questions, references, candidates)


def _columns(k):
    row = GSM8K_ROWS[0]
    return {"question": [row["question"]] * k, "expert_answer": [row["answer"]] * k, "patch_row_id": [0] * k}


def test_a_judge_that_says_no_rejects_what_the_gate_accepts(tiny_model):
    model, tokenizer = tiny_model
    completions = [GOOD_REWRITES[72], "The answer is 72.\n#### 72"]  # feasible; no reasoning
    assert TaskConsistencyReward()(prompts=["p"] * 2, completions=completions, **_columns(2)) == [1.0, 0.0]

    yes = RecordingJudge(threshold=0.0)  # p >= 0 always: YES
    gate = TaskConsistencyReward(judge=yes)
    gate.bind(model, tokenizer)
    assert gate(prompts=["p"] * 2, completions=completions, **_columns(2)) == [1.0, 0.0]
    assert yes.asked == [GOOD_REWRITES[72]], "the judge only sees candidates the deterministic gate accepted"

    no = RecordingJudge(threshold=1.01)  # p <= 1 always: NO
    logged = {}
    reward = PatchReward(judge=no, scorer=QAScorer(model, tokenizer))
    reward.bind(model, tokenizer)
    totals = reward(prompts=["p"] * 2, completions=completions, log_metric=logged.__setitem__, **_columns(2))
    assert totals == [0.0, 0.0]
    assert reward.last_components["r_task"] == [0.0, 0.0]
    assert reward.last_components["reasons"] == ["judge_rejected", "no_reasoning"]
    assert logged["patch/rejected/judge_rejected"] == pytest.approx(0.5) and logged["patch/feasible_fraction"] == 0.0
