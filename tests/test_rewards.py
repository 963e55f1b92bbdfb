import json
import math

import pytest
import torch
from conftest import GOOD_REWRITES, GSM8K_ROWS

from hf_patchdist.rewards import (
    CandidateEvaluation,
    DiversityReward,
    PatchReward,
    QAStyleAlignmentReward,
    RunningEmbeddingMean,
    TaskConsistencyReward,
    alignment_rewards,
    diversity_rewards,
    group_indices,
    mean_pairwise_distance,
)
from hf_patchdist.scoring import QAScorer


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


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


# Feasible rewrites of the Natalia row (GSM8K_ROWS[0]) under the GRPO gate, each worded differently.
NATALIA_REWRITES = [
    GOOD_REWRITES[72],
    "Half of 48 is 48 / 2 = 24. So 24 + 48 = 72 clips were sold.\n#### 72",
    "April gave 48 clips; May gave 48 / 2 = 24 clips; the sum is 48 + 24 = 72.\n#### 72",
    "In May she sold 48 / 2 = 24 clips, so in all 48 + 24 = 72.\n#### 72",
    "May: 48 / 2 = 24 clips. Both months: 48 + 24 = 72 clips.\n#### 72",
    "She sold 48 clips first and 48 / 2 = 24 clips next, which makes 48 + 24 = 72.\n#### 72",
]


def pi0_scores(model, tokenizer, question, texts):
    """NLL and embedding of each text under pi_0 given QA(q), one text per QAScorer call (no batching effects)."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    scorer = QAScorer(model, tokenizer)
    nll, embeddings = [], []
    for text in texts:
        out = scorer.score([prompt], [text])
        nll.append(out.nll[0])
        embeddings.append([float(x) for x in out.embeddings[0]])
    return nll, embeddings


def written_out_rewards(nll, embeddings, feasible, row_ids, lambda_dist, lambda_div, eps=1e-6):
    """The paper's formulas, written out here (not the module's helpers), per group of row ids.

    r_dist = sigmoid(-(l_i - mean_F) / (std_F + eps)), population std over the group's feasible set F;
    r_div = max(0, D(F) - D(F minus i)), D = mean pairwise (1 - cos) / 2 (0 below two items);
    r = r_task * (1 + lambda_dist * r_dist + lambda_div * r_div).
    """

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    def spread(members):
        pairs = [(a, b) for k, a in enumerate(members) for b in members[k + 1 :]]
        return sum((1 - cos(embeddings[a], embeddings[b])) / 2 for a, b in pairs) / len(pairs) if pairs else 0.0

    n = len(nll)
    r_dist, r_div = [0.0] * n, [0.0] * n
    for row_id in set(row_ids):
        members = [i for i in range(n) if row_ids[i] == row_id and feasible[i]]
        if not members:
            continue
        mean = sum(nll[i] for i in members) / len(members)
        std = math.sqrt(sum((nll[i] - mean) ** 2 for i in members) / len(members))
        whole = spread(members)
        for i in members:
            r_dist[i] = sigmoid(-(nll[i] - mean) / (std + eps))
            r_div[i] = max(0.0, whole - spread([j for j in members if j != i]))
    totals = [(1 + lambda_dist * d + lambda_div * v) if ok else 0.0 for ok, d, v in zip(feasible, r_dist, r_div)]
    return totals, r_dist, r_div


def test_groups_follow_row_ids_not_prompt_text(tiny_model):
    """Two rows with the same question are two groups: each is normalised on its own, whatever the order."""
    model, tokenizer = tiny_model
    row = GSM8K_ROWS[0]
    # Interleaved: row id 7 gets rewrites 0-2, row id 3 gets rewrites 3-5, and one infeasible candidate each.
    texts = [NATALIA_REWRITES[0], NATALIA_REWRITES[3], NATALIA_REWRITES[1], "#### 72", NATALIA_REWRITES[4],
             NATALIA_REWRITES[2], NATALIA_REWRITES[5], "words only"]
    row_ids = [7, 3, 7, 3, 3, 7, 3, 7]
    nll, embeddings = pi0_scores(model, tokenizer, row["question"], texts)
    feasible = [t in NATALIA_REWRITES for t in texts]
    _, r_dist, r_div = written_out_rewards(nll, embeddings, feasible, row_ids, 0.35, 0.5)

    def call(order):
        reward = PatchReward(scorer=QAScorer(model, tokenizer), lambda_dist=0.35, lambda_div=0.5)
        totals = reward(prompts=["p"] * len(order), completions=[texts[i] for i in order], question=[row["question"]] * len(order),
                        expert_answer=[row["answer"]] * len(order), patch_row_id=[row_ids[i] for i in order])
        parts = reward.last_components
        # keyed by (row id, text): the same candidate of the same row must get the same reward in any order
        return {(row_ids[i], texts[i]): (totals[k], parts["r_dist"][k], parts["r_div"][k]) for k, i in enumerate(order)}

    first = call(list(range(len(texts))))
    for i, text in enumerate(texts):
        total, dist, div = first[(row_ids[i], text)]
        assert dist == pytest.approx(r_dist[i], abs=1e-4) and div == pytest.approx(r_div[i], abs=1e-4), (i, text)
    for row_id in (7, 3):  # z-normalised inside each row's three feasible candidates, not over all six
        group = [r_dist[i] for i in range(len(texts)) if row_ids[i] == row_id and feasible[i]]
        z = [math.log(d / (1 - d)) for d in group]
        assert sum(z) == pytest.approx(0.0, abs=1e-3) and sum(v * v for v in z) / 3 == pytest.approx(1.0, abs=1e-3)

    shuffled = [5, 3, 0, 6, 7, 2, 4, 1]
    second = call(shuffled)
    assert second.keys() == first.keys()
    for key in first:
        assert second[key] == pytest.approx(first[key], abs=1e-5), key


def test_patch_reward_matches_the_formula(tiny_model):
    model, tokenizer = tiny_model
    alt72 = NATALIA_REWRITES[1]
    completions = [GOOD_REWRITES[72], "The answer is 72.\n#### 72", alt72, GOOD_REWRITES[10], "#### 11", "words only"]
    columns = _columns(2, 3)
    logged = {}
    reward = PatchReward(scorer=QAScorer(model, tokenizer), lambda_dist=0.35, lambda_div=0.5)
    totals = reward(prompts=["p"] * 6, completions=completions, log_metric=lambda k, v: logged.__setitem__(k, v), **columns)

    feasible = [True, False, True, True, False, False]  # no reasoning, wrong final answer, no final answer
    assert reward.last_components["r_task"] == [float(ok) for ok in feasible]
    nll, embeddings = [None] * 6, [None] * 6
    for i, (question, text) in enumerate(zip(columns["question"], completions)):
        if feasible[i]:
            (nll[i],), (embeddings[i],) = pi0_scores(model, tokenizer, question, [text])
    expected, r_dist, r_div = written_out_rewards(nll, embeddings, feasible, columns["patch_row_id"], 0.35, 0.5)
    assert totals == pytest.approx(expected, abs=1e-4)
    assert reward.last_components["r_dist"] == pytest.approx(r_dist, abs=1e-4)
    assert reward.last_components["r_div"] == pytest.approx(r_div, abs=1e-4)
    assert totals[1] == totals[4] == totals[5] == 0.0, "gating zeroes infeasible candidates"
    assert reward.last_components["r_dist"][3] == 0.5 and reward.last_components["r_div"][3] == 0.0, "a lone feasible candidate"
    assert totals[3] == pytest.approx(1 + 0.35 * 0.5)
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
    names = {TaskConsistencyReward: "r_task", QAStyleAlignmentReward: "r_dist", DiversityReward: "r_div", PatchReward: "patch_reward"}
    for cls, name in names.items():
        reward = cls()
        assert not isinstance(reward, torch.nn.Module)
        assert reward.__name__ == name, cls


def test_centring_on_a_mean_other_than_the_groups_makes_nearly_parallel_embeddings_diverse():
    """Embeddings sharing one large common direction give r_div ~ 0 raw; centred on a mean from earlier
    candidates (not the group's own) their differences show."""
    generator = torch.Generator().manual_seed(0)
    common = torch.full((16,), 10.0)
    earlier = common + 0.3 * torch.randn(32, 16, generator=generator)
    group = common + 0.3 * torch.randn(4, 16, generator=generator)
    feasible, groups = [True] * 4, [[0, 1, 2, 3]]
    raw = diversity_rewards(group, feasible, groups)
    running = RunningEmbeddingMean(momentum=0.99)
    running.update(earlier.sum(dim=0), 32)
    centred = diversity_rewards(group, feasible, groups, center=running.mean)
    assert max(raw) < 1e-3
    assert sum(centred) / 4 > 20 * sum(raw) / 4
    # The group's own mean is not the point: centred on it, any two members are opposite (cosine -1).
    own = diversity_rewards(group[:2], [True, True], [[0, 1]], center=group[:2].mean(dim=0))
    assert own == pytest.approx([1.0, 1.0])


def test_running_mean_is_cumulative_then_exponential_and_round_trips():
    running = RunningEmbeddingMean(momentum=0.5)
    assert running.mean is None
    running.update(torch.tensor([2.0, 0.0]), 1)
    assert running.mean.tolist() == [2.0, 0.0]
    running.update(torch.tensor([0.0, 4.0]), 1)  # cumulative: weight 1/2 = max(0.5, 1/2)
    assert running.mean.tolist() == [1.0, 2.0]
    running.update(torch.tensor([4.0, 4.0]), 1)  # weight max(0.5, 1/3) = 0.5: exponential from here
    assert running.mean.tolist() == [2.5, 3.0]
    running.update(None, 0)
    assert running.count == 3
    copy = RunningEmbeddingMean()
    copy.load_state_dict(json.loads(json.dumps(running.state_dict())))
    assert torch.equal(copy.mean, running.mean) and (copy.count, copy.momentum) == (3, 0.5)
    with pytest.raises(ValueError, match="momentum"):
        RunningEmbeddingMean(1.0)


def test_patch_reward_centres_r_div_on_earlier_calls_and_logs_each_terms_share(tiny_model):
    """First call: no mean yet, the raw formula. Second call: the embeddings centred on the first call's feasible
    mean, updated only after the rewards; each term's contribution logged next to the other."""
    model, tokenizer = tiny_model
    row = GSM8K_ROWS[0]
    first, second = NATALIA_REWRITES[:3], NATALIA_REWRITES[3:]
    _, first_emb = pi0_scores(model, tokenizer, row["question"], first)
    nll, second_emb = pi0_scores(model, tokenizer, row["question"], second)
    columns = {"question": [row["question"]] * 3, "expert_answer": [row["answer"]] * 3, "patch_row_id": [0] * 3}
    reward = PatchReward(scorer=QAScorer(model, tokenizer))
    reward(prompts=["p"] * 3, completions=first, **columns)
    mean = torch.tensor(first_emb).mean(dim=0)
    logged = {}
    reward(prompts=["p"] * 3, completions=second, log_metric=logged.__setitem__, **columns)
    centred = (torch.tensor(second_emb) - mean).tolist()
    _, _, expected = written_out_rewards(nll, centred, [True] * 3, [0] * 3, 0.35, 0.5)
    assert reward.last_components["r_div"] == pytest.approx(expected, abs=1e-4)
    _, _, raw = written_out_rewards(nll, second_emb, [True] * 3, [0] * 3, 0.35, 0.5)
    assert reward.last_components["r_div"] != pytest.approx(raw, abs=1e-4), "centring must change r_div"
    assert logged["patch/div_term"] == pytest.approx(0.5 * sum(expected) / 3, abs=1e-5)
    assert logged["patch/dist_term"] == pytest.approx(0.35 * logged["patch/r_dist"])
    assert "patch/r_div_std" in logged
    expected_mean = (torch.tensor(first_emb).sum(0) + torch.tensor(second_emb).sum(0)) / 6
    assert reward.embedding_mean.count == 6 and torch.allclose(reward.embedding_mean.mean, expected_mean, atol=1e-5)

    raw_reward = PatchReward(scorer=QAScorer(model, tokenizer), diversity_centering="none")
    for texts in (first, second):
        raw_reward(prompts=["p"] * 3, completions=texts, **columns)
    assert raw_reward.last_components["r_div"] == pytest.approx(raw, abs=1e-4)
    assert raw_reward.state_dict() == {}
    with pytest.raises(ValueError, match="diversity_centering"):
        DiversityReward(diversity_centering="group")


def test_the_running_mean_is_gathered_from_every_process():
    """With a gather (several processes), the mean folds in the other processes' candidates too."""
    reward = DiversityReward()
    other_process = (torch.tensor([0.0, 6.0]).tolist(), 2)
    reward.gather = lambda local: local + [other_process]
    evaluation = CandidateEvaluation([True, False], ["", "no_final_answer"], [[0, 1]], [1.0, None], torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
    reward.compute(evaluation, None)
    assert reward.embedding_mean.count == 3
    assert reward.embedding_mean.mean.tolist() == pytest.approx([1.0, 2.0])
