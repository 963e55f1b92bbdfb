import math

import pytest

from hf_patchdist.rewriter.candidates import HIGHER_NLL_THAN_EXPERT, JudgedCandidate, JudgedRow, select_target
from hf_patchdist.rewriter.limits import TOO_LONG


EXPERT = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"


def feasible(text: str, nll: float) -> JudgedCandidate:
    return JudgedCandidate(text, True, kept_text=text, nll=nll)


def rejected(reason: str) -> JudgedCandidate:
    return JudgedCandidate("#### 72", False, reason=reason, detail="...")


def row(*candidates: JudgedCandidate, original_nll: float = 1.0, **kwargs) -> JudgedRow:
    return JudgedRow(EXPERT, original_nll=original_nll, candidates=list(candidates), **kwargs)


def test_the_lowest_nll_feasible_candidate_is_kept():
    chosen = select_target(row(rejected("no_reasoning"), feasible("a", 0.8), feasible("b", 0.5), feasible("c", 0.9)))
    assert (chosen.source, chosen.text, chosen.nll, chosen.num_feasible) == ("rewrite", "b", 0.5, 3)


def test_best_of_k_reads_only_the_first_k_candidates():
    judged = row(rejected("no_reasoning"), feasible("a", 0.8), rejected("truncated"), feasible("b", 0.5))
    assert select_target(judged, k=1).source == "fallback" and select_target(judged, k=1).reason == "no_reasoning"
    assert (select_target(judged, k=2).text, select_target(judged, k=2).num_feasible) == ("a", 1)
    assert (select_target(judged, k=4).text, select_target(judged, k=4).num_feasible) == ("b", 2)
    assert select_target(judged, k=0).reason == "no_candidates"


@pytest.mark.parametrize("require", [True, False])
def test_a_rewrite_further_from_pi0_than_the_expert_answer_replaces_it_only_when_allowed(require):
    judged = row(feasible("a", 1.3), feasible("b", 1.1), original_nll=1.0)
    chosen = select_target(judged, require_lower_nll=require)
    if require:
        assert (chosen.source, chosen.reason, chosen.nll, chosen.text) == ("fallback", HIGHER_NLL_THAN_EXPERT, 1.0, None)
        assert chosen.num_feasible == 2, "the feasible count does not depend on the choice"
    else:
        assert (chosen.source, chosen.text, chosen.nll) == ("rewrite", "b", 1.1)


def test_an_equal_nll_is_not_lower_and_an_unscored_expert_answer_compares_with_nothing():
    assert select_target(row(feasible("a", 1.0), original_nll=1.0), require_lower_nll=True).reason == HIGHER_NLL_THAN_EXPERT
    assert select_target(row(feasible("a", 5.0), original_nll=math.nan), require_lower_nll=True).text == "a"


def test_a_candidate_equal_to_the_expert_answer_without_annotations_is_a_copy():
    copy = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether.\n#### 72"
    assert select_target(row(feasible(copy, 0.7))).source == "copy"


def test_the_most_common_rejection_is_the_reason_and_a_limit_too_short_is_too_long():
    assert select_target(row(rejected("truncated"), rejected("no_reasoning"), rejected("no_reasoning"))).reason == "no_reasoning"
    short = row(rejected("truncated"), expert_tokens=90, limit=80)
    assert select_target(short).reason == TOO_LONG
    assert select_target(row(rejected("truncated"), expert_tokens=40, limit=80)).reason == "truncated"


def test_a_row_that_was_not_generated_keeps_its_reason():
    chosen = select_target(JudgedRow(None, reason="missing_answer"))
    assert (chosen.source, chosen.reason, chosen.num_feasible) == ("fallback", "missing_answer", 0)
    assert math.isnan(chosen.nll)
