"""Tests of the gate's text helpers (hf_patchdist.verifiers.text_checks) and of the checks built on them,
in languages other than English."""

from __future__ import annotations

import pytest

from hf_patchdist.verifiers import GRPO_GATE, MathVerifier, get_verifier, is_reference_copy, reference_similarity
from hf_patchdist.verifiers.text_checks import _lcs_length, _normalize_words

from .verifier_cases import NATALIA, NATALIA_REWRITE

# GSM8K's "Natalia" row in Russian and in Chinese.
RU_QUESTION = (
    "Наталья продала заколки 48 своим друзьям в апреле, а в мае она продала вдвое меньше заколок. "
    "Сколько всего заколок Наталья продала в апреле и мае?"
)
RU_ANSWER = (
    "Наталья продала 48/2 = <<48/2=24>>24 заколки в мае.\n"
    "Всего Наталья продала 48+24 = <<48+24=72>>72 заколки в апреле и мае.\n#### 72"
)
ZH_QUESTION = "娜塔莉亚在四月份把发夹卖给了她的48个朋友，五月份她卖出的发夹数量是四月份的一半。娜塔莉亚在四月和五月一共卖了多少个发夹？"
ZH_ANSWER = "娜塔莉亚五月份卖了48/2 = <<48/2=24>>24个发夹。\n娜塔莉亚四月和五月一共卖了48+24 = <<48+24=72>>72个发夹。\n#### 72"


def test_words_are_unicode_words_and_han_characters_are_one_each():
    assert _normalize_words("Наталья продала 48/2 заколки") == ["наталья", "продала", "48", "2", "заколки"]
    assert _normalize_words("卖了48个发夹。") == ["卖", "了", "48", "个", "发", "夹"]
    assert _normalize_words("ひらがなとカタカナ") == list("ひらがなとカタカナ")
    assert _normalize_words("Natalia’s clips, don't") == ["natalia's", "clips", "don't"]
    assert _normalize_words("café naïve 한국어") == ["café", "naïve", "한국어"]


def test_lcs_length():
    assert _lcs_length(list("abcde"), list("axbyd")) == 3
    assert _lcs_length([], ["a"]) == 0
    assert _lcs_length(["a", "a", "b"], ["a", "b", "a"]) == 2


def test_similarity_survives_edited_words_and_annotations():
    copy = NATALIA["answer"]  # annotations left in: they must not hide the copy
    assert reference_similarity(copy, NATALIA["answer"]) == 1.0
    edited = (
        "Natalia sold 48/2 = 24 clips in the month of May.\n"
        "Natalia sold 48+24 = 72 clips in total in April and May.\n#### 72"
    )
    assert reference_similarity(edited, NATALIA["answer"]) >= 0.9
    # Two words replaced cost two words of the share.
    replaced = copy.replace("altogether", "overall").replace("clips in May", "pins in May")
    assert reference_similarity(replaced, NATALIA["answer"]) == pytest.approx(18 / 20)
    assert reference_similarity(NATALIA_REWRITE, NATALIA["answer"]) < 0.7
    assert reference_similarity("", NATALIA["answer"]) == 0.0


def test_is_reference_copy():
    stripped = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
    assert is_reference_copy(stripped, NATALIA["answer"])
    assert is_reference_copy(NATALIA["answer"] + "\n", NATALIA["answer"])
    assert not is_reference_copy(stripped.replace("altogether", "in all"), NATALIA["answer"])
    assert not is_reference_copy(None, NATALIA["answer"])
    assert is_reference_copy("28-4 = 24\n24 + 11 = 35\n#### 35", "28-4=<<28-4=24>>24\n24+11=<<24+11=35>>35\n#### 35"), "spacing is no rewrite"


@pytest.mark.parametrize(
    ("question", "answer", "copy", "rewrite"),
    [
        (
            RU_QUESTION,
            RU_ANSWER,
            RU_ANSWER.replace("Всего ", "Итого ").replace("в мае.", "в мае месяце."),
            "В мае она продала вдвое меньше: 48 / 2 = 24.\nЗа два месяца получается 48 + 24 = 72.\n#### 72",
        ),
        (
            ZH_QUESTION,
            ZH_ANSWER,
            ZH_ANSWER.replace("一共", "总共"),
            "五月是四月的一半：48 / 2 = 24。\n两个月合计 48 + 24 = 72。\n#### 72",
        ),
    ],
    ids=["russian", "chinese"],
)
def test_text_checks_see_other_languages(question, answer, copy, rewrite):
    grpo = get_verifier(GRPO_GATE)
    assert MathVerifier()(answer, answer, question=question).passed
    result = grpo(copy, answer, question=question)
    assert result.reason == "copies_reference", (result.reason, result.detail)
    result = grpo(rewrite, answer, question=question)
    assert result.passed, (result.reason, result.detail)
    # Restating the whole question is seen too (before, only its numbers were words).
    restated = question + "\n" + rewrite
    result = MathVerifier()(restated, answer, question=question)
    assert result.reason == "restates_question", (result.reason, result.detail)
