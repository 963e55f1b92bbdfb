import math

import pytest
import torch
import torch.nn.functional as F

from hf_patchdist.scoring import QAScorer, render_qa_prompt


def _manual_nll(model, tokenizer, prompt, answer):
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logits = model(ids).logits[0]
    return float(F.cross_entropy(logits[len(p) - 1 : -1], ids[0, len(p) :]))


def test_nll_matches_an_unbatched_forward(tiny_model):
    model, tokenizer = tiny_model
    prompts = [render_qa_prompt(tokenizer, q) for q in ["What is 2+3?", "A much longer question about apples and pears?"]]
    answers = ["2+3=5\n#### 5", "Apples: 4*3=12, pears 12-2=10 so 22 in all.\n#### 22"]
    out = QAScorer(model, tokenizer).score(prompts, answers)
    for prompt, answer, value in zip(prompts, answers, out.nll):
        assert value == pytest.approx(_manual_nll(model, tokenizer, prompt, answer), rel=1e-4)
    assert out.embeddings.shape == (2, model.config.hidden_size)
    assert out.num_tokens == [len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]


def test_batch_composition_and_padding_do_not_change_numbers(tiny_model):
    model, tokenizer = tiny_model
    prompt_short = render_qa_prompt(tokenizer, "Hi?")
    prompt_long = render_qa_prompt(tokenizer, "A long question " * 20 + "?")
    answers = ["#### 1", "Many words here, 3*4=12.\n#### 12", "x"]
    alone = [QAScorer(model, tokenizer).score([prompt_short], [a]) for a in answers]
    mixed = QAScorer(model, tokenizer, batch_size=8).score([prompt_long, prompt_short, prompt_short, prompt_short], ["pad " * 30, *answers])
    for i, single in enumerate(alone):
        assert mixed.nll[i + 1] == pytest.approx(single.nll[0], abs=1e-4)
        torch.testing.assert_close(mixed.embeddings[i + 1], single.embeddings[0], atol=1e-4, rtol=1e-4)


def test_empty_answer_is_nan(tiny_model):
    model, tokenizer = tiny_model
    out = QAScorer(model, tokenizer).score([render_qa_prompt(tokenizer, "q")], [""])
    assert math.isnan(out.nll[0])


def test_adapter_is_disabled_while_scoring(tiny_model):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_model
    prompt, answer = render_qa_prompt(tokenizer, "What is 2+3?"), "#### 5"
    base = QAScorer(model, tokenizer).score([prompt], [answer]).nll[0]
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    with torch.no_grad():
        adapted_logits = peft_model(**tokenizer(prompt + answer, return_tensors="pt")).logits
    assert QAScorer(peft_model, tokenizer).score([prompt], [answer]).nll[0] == pytest.approx(base, abs=1e-5)
    with peft_model.disable_adapter(), torch.no_grad():
        base_logits = peft_model(**tokenizer(prompt + answer, return_tensors="pt")).logits
    assert not torch.allclose(adapted_logits, base_logits), "the adapter must change the policy"


def test_qa_template_reproduces_the_authors_prefix(tiny_model):
    _, tokenizer = tiny_model
    assert render_qa_prompt(tokenizer, "Q?", qa_template="Problem:\n{question}\n\nAnswer:\n") == "Problem:\nQ?\n\nAnswer:\n"
    assert "<|im_start|>user\nQ?<|im_end|>" in render_qa_prompt(tokenizer, "Q?")
