import math

import pytest
import torch
from conftest import GOOD_REWRITES, GSM8K_ROWS

from hf_patchdist.rewards import (
    DiversityReward,
    PatchReward,
    QAStyleAlignmentReward,
    TaskConsistencyReward,
    alignment_rewards,
    diversity_rewards,
    group_indices,
    mean_pairwise_distance,
)
from hf_patchdist.scoring import QAScorer


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_groups_follow_row_ids_not_prompt_text():
    assert group_indices([7, 7, 3, 3, 7]) == [[0, 1, 4], [2, 3]]


def test_alignment_uses_only_feasible_candidates_with_population_std():
    nll = [1.0, 2.0, 100.0, 4.0]
    feasible = [True, True, False, True]
    rewards = alignment_rewards(nll, feasible, [[0, 1, 2, 3]])
    mean = (1 + 2 + 4) / 3
    std = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 3)
    expected = [sigmoid(-(v - mean) / (std + 1e-6)) for v in (1.0, 2.0, 4.0)]
    assert rewards[2] == 0.0
    assert [rewards[0], rewards[1], rewards[3]] == pytest.approx(expected)
    assert rewards[0] > rewards[1] > rewards[3], "lower NLL must earn more"


def test_lone_feasible_candidate_gets_half_and_no_diversity():
    feasible = [False, True, False]
    assert alignment_rewards([None, 3.0, None], feasible, [[0, 1, 2]]) == [0.0, 0.5, 0.0]
    assert diversity_rewards(torch.randn(3, 4), feasible, [[0, 1, 2]]) == [0.0, 0.0, 0.0]


def test_equal_nll_gives_half():
    assert alignment_rewards([2.0, 2.0], [True, True], [[0, 1]]) == pytest.approx([0.5, 0.5])


def test_identical_embeddings_give_no_diversity():
    emb = torch.ones(3, 4)
    assert diversity_rewards(emb, [True] * 3, [[0, 1, 2]]) == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_two_feasible_each_get_their_distance():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    rewards = diversity_rewards(emb, [True, True, False], [[0, 1, 2]])
    assert rewards == pytest.approx([0.5, 0.5, 0.0])  # (1 - cos 90deg) / 2


def test_diversity_is_marginal_contribution():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    rewards = diversity_rewards(emb, [True] * 3, [[0, 1, 2]])
    whole = (0.0 + 0.5 + 0.5) / 3
    assert mean_pairwise_distance(emb) == pytest.approx(whole)
    assert rewards == pytest.approx([max(0, whole - 0.5), max(0, whole - 0.5), whole - 0.0])
    assert rewards[2] > rewards[0]


def test_groups_are_normalised_separately():
    nll = [1.0, 3.0, 10.0, 30.0]
    rewards = alignment_rewards(nll, [True] * 4, group_indices([0, 0, 1, 1]))
    assert rewards[0] == pytest.approx(rewards[2]) and rewards[1] == pytest.approx(rewards[3])


def _columns(n_groups, k):
    rows = GSM8K_ROWS[:n_groups]
    return {
        "question": [r["question"] for r in rows for _ in range(k)],
        "expert_answer": [r["answer"] for r in rows for _ in range(k)],
        "patch_row_id": [i for i in range(n_groups) for _ in range(k)],
    }


def test_patch_reward_matches_the_formula(tiny_model):
    model, tokenizer = tiny_model
    alt72 = "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72"
    completions = [GOOD_REWRITES[72], "The answer is 72.\n#### 72", alt72, GOOD_REWRITES[10], "#### 11", "words only"]
    columns = _columns(2, 3)
    logged = {}
    reward = PatchReward(scorer=QAScorer(model, tokenizer), lambda_dist=0.35, lambda_div=0.5)
    totals = reward(prompts=["p"] * 6, completions=completions, log_metric=lambda k, v: logged.__setitem__(k, v), **columns)

    gate = TaskConsistencyReward()(prompts=["p"] * 6, completions=completions, **columns)
    assert gate == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    r_dist = QAStyleAlignmentReward(scorer=QAScorer(model, tokenizer))(prompts=["p"] * 6, completions=completions, **columns)
    r_div = DiversityReward(scorer=QAScorer(model, tokenizer))(prompts=["p"] * 6, completions=completions, **columns)
    expected = [g * (1 + 0.35 * d + 0.5 * v) for g, d, v in zip(gate, r_dist, r_div)]
    assert totals == pytest.approx(expected)
    assert totals[1] == totals[4] == totals[5] == 0.0, "gating zeroes infeasible candidates"
    assert r_dist[3] == 0.5 and r_div[3] == 0.0, "a lone feasible candidate"
    assert r_dist[0] + r_dist[2] == pytest.approx(1.0), "two feasible: z = +-1"
    assert r_div[0] == pytest.approx(r_div[2]) and r_div[0] > 0
    assert logged["patch/feasible_fraction"] == pytest.approx(0.5)
    rejected = {k.removeprefix("patch/rejected/"): v for k, v in logged.items() if k.startswith("patch/rejected/")}
    assert sum(rejected.values()) == pytest.approx(0.5) and all(v > 0 for v in rejected.values())

    # A later call without those rejections logs them as 0, not as missing.
    logged.clear()
    reward(prompts=["p"] * 2, completions=[GOOD_REWRITES[72]] * 2, log_metric=lambda k, v: logged.__setitem__(k, v), **_columns(1, 2))
    assert {k.removeprefix("patch/rejected/") for k in logged if k.startswith("patch/rejected/")} == set(rejected)
    assert all(logged[f"patch/rejected/{reason}"] == 0.0 for reason in rejected)


def test_conversational_completions_and_completion_ids(tiny_model):
    model, tokenizer = tiny_model
    columns = _columns(1, 2)
    completions = [[{"role": "assistant", "content": GOOD_REWRITES[72]}]] * 2
    eos = tokenizer.eos_token_id
    reward = TaskConsistencyReward()
    reward.bind(model, tokenizer)
    assert reward(prompts=["p"] * 2, completions=completions, completion_ids=[[5, eos], [5, 6]], **columns) == [1.0, 0.0]


def test_strict_gate_fails_trailing_text():
    columns = _columns(1, 1)
    text = GOOD_REWRITES[72] + "\nNow another question: what is 2+2?"
    assert TaskConsistencyReward()(prompts=["p"], completions=[text], **columns) == [0.0]


def test_missing_columns_are_named():
    with pytest.raises(KeyError, match="patch_row_id"):
        TaskConsistencyReward()(prompts=["p"], completions=["x"], question=["q"], expert_answer=["#### 1"])


def test_rewards_are_not_modules_and_have_names():
    for cls in (TaskConsistencyReward, QAStyleAlignmentReward, DiversityReward, PatchReward):
        reward = cls()
        assert not isinstance(reward, torch.nn.Module)
        assert reward.__name__ in {"r_task", "r_dist", "r_div", "patch_reward"}
