import math

import pytest
import torch
import torch.nn.functional as F

from hf_patchdist.scoring import QAScorer, forward_continuations, render_qa_prompt


def _unbatched(model, context_ids, continuation_ids):
    """One sequence, no padding, default positions: the logits predicting the continuation and its last hidden states."""
    ids = torch.tensor([[*context_ids, *continuation_ids]])
    with torch.no_grad():
        output = model(ids, output_hidden_states=True)
    start = len(context_ids)
    return output.logits[0, start - 1 : -1], output.hidden_states[-1][0, start:]


def _manual_nll(model, tokenizer, prompt, answer):
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"]
    logits, _ = _unbatched(model, p, a)
    return float(F.cross_entropy(logits, torch.tensor(a)))


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


def test_forward_continuations_matches_one_forward_per_row(tiny_model):
    model, tokenizer = tiny_model
    texts = [("What is 2+3?", " 2+3=5 so 5"), ("A much longer context that forces padding " * 4, " ok"), ("Hi", ""), ("x", " y z w v u t s r")]
    pairs = [(tokenizer(c, add_special_tokens=False)["input_ids"], tokenizer(k, add_special_tokens=False)["input_ids"]) for c, k in texts]
    window = max(len(k) for _, k in pairs)
    with torch.no_grad():
        out = forward_continuations(model, pairs, tokenizer.pad_token_id, output_hidden_states=True)
    assert out.logits.shape == (len(pairs), window, model.config.vocab_size)
    assert out.targets.shape == out.mask.shape == (len(pairs), window)
    assert out.hidden_states.shape == (len(pairs), window, model.config.hidden_size)
    for row, (context, continuation) in enumerate(pairs):
        n = len(continuation)
        # right-aligned: the row's continuation fills its last n positions
        assert out.mask[row].tolist() == [False] * (window - n) + [True] * n
        assert out.targets[row, window - n :].tolist() == continuation
        logits, hidden = _unbatched(model, context, continuation)
        torch.testing.assert_close(out.logits[row, window - n :], logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out.hidden_states[row, window - n :], hidden, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        assert forward_continuations(model, pairs, tokenizer.pad_token_id).hidden_states is None


def test_an_empty_context_is_refused(tiny_model):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="empty context"):
        forward_continuations(model, [([1, 2], [3]), ([], [4, 5])], tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="empty context"):
        QAScorer(model, tokenizer).score([""], ["#### 5"])


def test_scores_equal_a_per_row_computation(tiny_model):
    model, tokenizer = tiny_model
    prompts = [render_qa_prompt(tokenizer, q) for q in ["What is 2+3?", "A much longer question about apples and pears?", "q", "Hi?"]]
    answers = ["2+3=5\n#### 5", "Apples: 4*3=12, pears 12-2=10 so 22 in all.\n#### 22", "", "#### 1"]
    out = QAScorer(model, tokenizer, batch_size=3, max_answer_tokens=12).score(prompts, answers)
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        continuation = tokenizer(answer, add_special_tokens=False)["input_ids"][:12]
        assert out.num_tokens[row] == len(continuation)
        if not continuation:
            assert math.isnan(out.nll[row]) and not out.embeddings[row].any()
            continue
        logits, hidden = _unbatched(model, context, continuation)
        assert out.nll[row] == pytest.approx(float(F.cross_entropy(logits, torch.tensor(continuation))), abs=1e-5)
        torch.testing.assert_close(out.embeddings[row], hidden.float().mean(0), atol=1e-5, rtol=1e-4)


def test_scoring_runs_in_eval_mode_and_restores_each_modules_mode(tiny_model_dir):
    """GRPO leaves the model in train mode before the rewards run: dropout must not make pi_0's NLL noisy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attention_dropout=0.5, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [render_qa_prompt(tokenizer, "What is 2+3?")] * 2
    answers = ["2+3=5\n#### 5", "Five, since 2+3=5."]
    model.eval()
    expected = QAScorer(model, tokenizer).score(prompts, answers)
    model.train()
    with torch.no_grad():  # the model does have dropout: two train-mode forwards differ
        ids = tokenizer(prompts[0] + answers[0], return_tensors="pt")
        assert not torch.equal(model(**ids).logits, model(**ids).logits)
    model.model.layers[0].eval()  # a part the caller keeps in eval mode stays so
    first, second = (QAScorer(model, tokenizer).score(prompts, answers) for _ in range(2))
    assert first.nll == second.nll == expected.nll
    torch.testing.assert_close(first.embeddings, expected.embeddings, rtol=0, atol=0)
    assert model.training and model.model.layers[1].training and not model.model.layers[0].training
    assert not any(m.training for m in model.model.layers[0].modules())
