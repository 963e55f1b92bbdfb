"""Tests of final-answer lines: where generation may stop and where trailing text is trimmed
(hf_patchdist.verifiers.final_answer)."""

from __future__ import annotations

import pytest
from .verifier_cases import NATALIA, NATALIA_REWRITE

from hf_patchdist.verifiers import MathVerifier

_BODY = "Natalia sold 48 + 24 = 72 clips.\n"


@pytest.mark.parametrize(
    ("text", "expected", "expected_final"),
    [
        (_BODY + "#### 7", None, len(_BODY + "#### 7")),
        (_BODY + "#### 72", None, len(_BODY + "#### 72")),
        (_BODY + "#### 72\n", len(_BODY + "#### 72\n"), len(_BODY + "#### 72\n")),
        (_BODY + "#### 72\nMore text", len(_BODY + "#### 72\n"), len(_BODY + "#### 72\n")),
        (_BODY + "#### Step 1: add\n", None, None),
        (_BODY, None, None),
        (_BODY + "\\boxed{7", None, None),
        (_BODY + "\\boxed{72}\n", None, len(_BODY + "\\boxed{72}\n")),
        (_BODY + "\\boxed{72}\nDone", len(_BODY + "\\boxed{72}\n"), len(_BODY + "\\boxed{72}\n")),
        (_BODY + "The answer is 72.\n", None, len(_BODY + "The answer is 72.\n")),
        (_BODY + "The answer is 72.\n#", None, len(_BODY + "The answer is 72.\n")),
        (
            _BODY + "The answer is 72.\n#### 72\n",
            len(_BODY + "The answer is 72.\n#### 72\n"),
            len(_BODY + "The answer is 72.\n#### 72\n"),
        ),
        (_BODY + "The answer is 72.\nSo", len(_BODY + "The answer is 72.\n"), len(_BODY + "The answer is 72.\n")),
        ("We might think the answer is 48, but May counts too.\n", None, None),
    ],
)
def test_final_answer_end(text, expected, expected_final):
    verifier = MathVerifier()
    assert verifier.final_answer_end(text) == expected
    assert verifier.final_answer_end(text, final=True) == expected_final


def test_final_answer_end_grows_monotonically_token_by_token():
    # Simulates a StoppingCriteria: the first prefix that is complete must cut right after "#### 72\n".
    text = NATALIA_REWRITE + "\nThanks for reading."
    ends = [MathVerifier().final_answer_end(text[:i]) for i in range(len(text) + 1)]
    first = next(i for i, end in enumerate(ends) if end is not None)
    assert text[:first] == NATALIA_REWRITE + "\n"
    assert ends[first] == first


def test_trimming_keeps_the_hash_line_after_an_answer_sentence():
    candidate = NATALIA_REWRITE.replace("#### 72", "So the answer is 72.\n#### 72\nExtra.")
    result = MathVerifier()(candidate, NATALIA["answer"])
    assert result.passed
    assert result.text.endswith("So the answer is 72.\n#### 72")
