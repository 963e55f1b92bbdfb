"""Tests of the misquoted-fact check: a fact of the question restated in its words keeps its number
(hf_patchdist.verifiers.math.quotes)."""

from __future__ import annotations

import pytest

from hf_patchdist.verifiers import MathVerifier
from hf_patchdist.verifiers.math.quotes import first_misquoted_fact

BEKAH = (
    "Bekah had to read 408 pages for history class. She read 113 pages over the weekend and has 5 days left to finish "
    "her reading. How many pages will she need to read each day for 5 days to complete her assignment?"
)
BEKAH_REFERENCE = "Pages left to read: 408 - 113 = <<408-113=295>>295 pages\n295/5 = <<295/5=59>>59 pages\n#### 59"


@pytest.mark.parametrize(
    ("text", "question", "shown"),
    [
        # The committed GSM8K rewriter's patch of train[:400], rows 222 and 399 (gate 6 accepted both).
        (
            "Bekah had to read 113 pages for history class.\nPages left to read: 408 - 113 = 295 pages",
            BEKAH,
            "'had to read 113 pages', the question says 'had to read 408 pages'",
        ),
        (
            "Sam and Jack put together 2 complete widgets every 10 minutes.",
            "Sam can assemble 1 widget every 10 minutes. When Jack helps, they put together 2 complete widgets every 15 "
            "minutes.",
            "'complete widgets every 10 minutes', the question says 'complete widgets every 15 minutes'",
        ),
        ("He can assemble 1 widget every 10 minutes.", "Sam can assemble 1 widget every 10 minutes.", None),
        # Row 306 ("If Reese is 6 inches taller than..." for the question's "If Reese is 60 inches tall") passes: a
        # number before "taller" states a difference, another fact than the height the question gives.
        (
            "If Reese is 6 inches taller than Parker, ...",
            "Daisy is 8 inches taller than Reese. If Reese is 60 inches tall, what is their average height?",
            None,
        ),
        ("She paid $12.00 for 4 apples.", "She paid $12 for 4 apples. How much is one apple?", None),  # same value
        ("There were 1,800 words in total.", "There were 1800 words in the book.", None),
        # A difference is not the quantity: "9 years older" and "56 years old" are different facts.
        ("When her sister is 56 years old, Emma is 56 - 9 = 47.", "If her sister is 9 years older than Emma ...", None),
        ("Her sister is 7 years older than her.", "Her sister is 9 years older than her.", "'Her sister is 7 years', the question says 'Her sister is 9 years'"),
        # Words in any script.
        ("Мальчик прочитал за день 12 страниц.", "Мальчик прочитал за день 20 страниц. Сколько за неделю?", "'прочитал за день 12 страниц', the question says 'прочитал за день 20 страниц'"),
    ],
)
def test_first_misquoted_fact(text, question, shown):
    assert first_misquoted_fact(text, question) == shown


def test_the_gate_rejects_a_misquoted_fact_whose_arithmetic_holds():
    leak = "Bekah had to read 113 pages for history class.\nPages left to read: 408 - 113 = 295 pages\n295/5 = 59 pages\n#### 59"
    result = MathVerifier()(leak, BEKAH_REFERENCE, question=BEKAH)
    assert result.reason == "misquoted_fact"
    assert "408" in result.detail
    honest = leak.replace("had to read 113 pages", "had to read 408 pages")
    assert MathVerifier()(honest, BEKAH_REFERENCE, question=BEKAH).passed
    # The option turns it off, and without the question there is nothing to quote.
    assert MathVerifier(reject_misquoted_facts=False)(leak, BEKAH_REFERENCE, question=BEKAH).passed
    assert MathVerifier()(leak, BEKAH_REFERENCE).passed


def test_annotations_are_not_quotes():
    # Numbers inside GSM8K annotations sit between operators and "=", never between a question's words.
    question = "Tom has 5 apples. He buys 3 more apples. How many apples does he have?"
    reference = "He has 5+3=<<5+3=8>>8 apples.\n#### 8"
    assert MathVerifier()(reference, reference, question=question).passed


def test_the_option_is_part_of_the_gate_settings():
    assert MathVerifier().to_dict()["reject_misquoted_facts"] is True
