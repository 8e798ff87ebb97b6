"""The fast local-loss matching: reduced-dimension search with exact re-ranking, its
certificates and error bounds, memory-bounded blocks, the match schedule and the matcher."""

from __future__ import annotations

import pytest
import torch

from stylecore import FusionParams, MatchingParams
from stylecore.losses import mrf_loss
from stylecore.matching import (
    CPU_SEARCH_BUDGET_BYTES,
    SearchSettings,
    approximate_nearest_patches,
    certified_nearest_patches,
    nearest_patches,
    normalize_patches,
    principal_basis,
    project_bank,
    search_blocks,
    shortlisted_nearest_patches,
)
from stylecore.modules import LocalStyleLoss, PatchMatcher
from stylecore.patches import MRFTarget, PatchBank, extract_patches
from tests.demo_images import demo_image


def matching(**fields: object) -> MatchingParams:
    """Matching settings for tiny feature maps: reuse allowed on any bank, every patch searched."""
    return MatchingParams(**({"reuse_min_patches": 0, "search_step": 1} | fields))


def exact_mrf(features: torch.Tensor, bank: PatchBank) -> torch.Tensor:
    """The local loss with an exact search now, as the paper defines it."""
    return mrf_loss(features, MRFTarget.nearest(bank, features))


def naive_scores(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(P, Ps) normalised cross-correlations, written out from the definition."""
    return (queries @ bank.t()) / queries.norm(dim=1, keepdim=True) / bank.norm(dim=1)


def low_rank_rows(rows: int, width: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    """(rows, width) vectors near a random `rank`-dimensional subspace, like VGG patches."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(rank, width, generator=generator)
    return torch.randn(rows, rank, generator=generator) @ mixing + noise * torch.randn(rows, width, generator=generator)


def test_principal_basis_is_orthonormal_deterministic_and_spans_a_low_rank_bank():
    bank = normalize_patches(low_rank_rows(300, 40, rank=6, noise=0.0, seed=0))
    basis = principal_basis(bank, 6)
    assert torch.allclose(basis @ basis.t(), torch.eye(6), atol=1e-5)
    assert torch.equal(basis, principal_basis(bank, 6))
    assert torch.allclose(bank @ basis.t() @ basis, bank, atol=1e-4), "6 directions must span a rank-6 bank"


def test_reranking_returns_the_exact_nearest_whenever_it_is_among_the_candidates():
    queries, bank = torch.randn(400, 36), normalize_patches(torch.randn(300, 36))
    projected = project_bank(bank, 8)
    found = approximate_nearest_patches(queries, bank, projected, candidates=4)
    exact = naive_scores(queries, bank).argmax(dim=1)
    assert torch.equal(found, certified_nearest_patches(queries, bank, projected, candidates=4).index)
    reduced_scores = normalize_patches(queries) @ projected.basis.t() @ projected.projected.t()
    in_candidates = (reduced_scores.topk(4, dim=1).indices == exact.unsqueeze(1)).any(dim=1)
    assert 0 < in_candidates.sum() < len(queries), "the test needs both kinds of query"
    assert torch.equal(found[in_candidates], exact[in_candidates])


def test_certified_answers_are_exact_and_the_error_bound_holds_everywhere():
    bank = normalize_patches(low_rank_rows(500, 48, rank=10, noise=0.05, seed=1))
    queries = low_rank_rows(600, 48, rank=10, noise=0.05, seed=2)
    projected = project_bank(bank, 10)
    found = certified_nearest_patches(queries, bank, projected, candidates=6)
    scores = naive_scores(queries, bank)
    best = scores.max(dim=1).values
    found_score = scores.gather(1, found.index.unsqueeze(1)).squeeze(1)
    assert 0 < found.certified.sum() < len(queries), "the test needs certified and uncertified queries"
    assert torch.equal(found.index[found.certified], scores.argmax(dim=1)[found.certified])
    assert torch.all(found.error_bound[found.certified] == 0)
    assert torch.all(best - found_score <= found.error_bound + 1e-6)


def test_full_dimension_or_a_bank_within_the_candidates_is_exact_and_certified():
    queries, bank = torch.randn(50, 20), normalize_patches(torch.randn(70, 20))
    exact = naive_scores(queries, bank).argmax(dim=1)
    whole = certified_nearest_patches(queries, bank, project_bank(bank, 20), candidates=3)
    few_rows = certified_nearest_patches(queries, bank[:5], project_bank(bank[:5], 2), candidates=8)
    assert torch.equal(whole.index, exact) and whole.certified.all()
    assert torch.equal(few_rows.index, naive_scores(queries, bank[:5]).argmax(dim=1)) and few_rows.certified.all()


@pytest.mark.parametrize("budget_bytes", [1, 3000, 40_000])
def test_small_memory_budgets_give_the_same_indices_as_one_unchunked_block(budget_bytes):
    queries, bank = torch.randn(90, 27), normalize_patches(torch.randn(130, 27))
    projected = project_bank(bank, 6)
    unchunked = certified_nearest_patches(queries, bank, projected, 5, 2**30, query_block=90, bank_block=130)
    chunked = certified_nearest_patches(queries, bank, projected, 5, budget_bytes)
    assert torch.equal(chunked.index, unchunked.index)
    assert torch.equal(chunked.certified, unchunked.certified)
    assert torch.equal(nearest_patches(queries, bank, budget_bytes), naive_scores(queries, bank).argmax(dim=1))


@pytest.mark.parametrize("rows", [10**4, 10**6, 10**8])
@pytest.mark.parametrize("budget", [8 * 2**20, 256 * 2**20])
def test_search_blocks_fit_the_budget_whatever_the_bank_size(rows, budget):
    width, count = 2304, 8
    query_rows, bank_rows = search_blocks(10**5, rows, width, count, 4, budget)
    working_bytes = 4 * (query_rows * bank_rows + query_rows * (count + 1) * width)
    assert working_bytes <= budget
    assert search_blocks(10**5, rows, width, count, 4, budget) == search_blocks(10**5, 10**4, width, count, 4, budget)


def test_search_settings_per_device():
    """The CPU keeps the cache-sized float32 blocks the benchmarks were measured with; a GPU gets one
    block per search and float16 candidate scores (re-ranked in float32), unless told otherwise."""
    cpu = SearchSettings.for_device("cpu")
    assert cpu == SearchSettings(CPU_SEARCH_BUDGET_BYTES, 256, 4096, torch.float32) and not cpu.reduced_precision
    assert SearchSettings.for_device("cpu", 1024).budget_bytes == 1024
    gpu = SearchSettings.for_device("cuda", budget_bytes=3 * 2**30)  # a given budget needs no CUDA to decide
    assert gpu.budget_bytes == 3 * 2**30 and gpu.search_dtype == torch.float16
    width, count = 2304, 8
    assert search_blocks(15876, 15876, width, count, 4, gpu.budget_bytes, gpu.query_block, gpu.bank_block) == \
        (15876, 15876), "a 512/512 refresh is one block on a GPU"
    exact = SearchSettings.for_device("cuda", budget_bytes=2**30, reduced_precision=False)
    assert exact.search_dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_scores_only_shortlist_and_the_ranking_is_exact_float32(dtype):
    """The exact search shortlisted in reduced precision finds the float32 nearest patch here (no two
    rows within its rounding); the reduced search's answers are scored in float32 whatever it ran in,
    and its certificate, made for the precision it ran in, still bounds its error everywhere."""
    queries, bank = low_rank_rows(300, 36, rank=8, noise=0.3, seed=3), normalize_patches(torch.randn(200, 36))
    exact = naive_scores(queries, bank).argmax(dim=1)
    assert torch.equal(shortlisted_nearest_patches(queries, bank, bank.to(dtype), shortlist=4), exact)
    projected = project_bank(bank, 12)
    low = certified_nearest_patches(queries, bank, projected.to_dtype(dtype), candidates=6)
    full = certified_nearest_patches(queries, bank, projected, candidates=6)
    assert (low.index == full.index).float().mean() >= 0.95
    scores = naive_scores(queries, bank)
    found_score = scores.gather(1, low.index.unsqueeze(1)).squeeze(1)
    assert torch.all(scores.max(dim=1).values - found_score <= low.error_bound + 1e-6)
    assert low.certified.sum() <= full.certified.sum(), "a coarser precision certifies less, never more"


def test_the_matcher_builds_its_level_constants_once():
    """The propagation plan is made at the first coherent refresh and reused by the next ones; the
    searched copies of the bank exist only in reduced precision."""
    style, synthesis = feature_maps(9, 2)
    loss = LocalStyleLoss(style, matching=MatchingParams(match_every=2, search_dim=4, reuse_min_patches=0),
                          evaluations=9)
    loss(synthesis)
    plan = loss.matcher.plan
    assert plan is not None and loss.matcher.searched_bank is None
    loss(synthesis), loss(synthesis)
    assert loss.matcher.plan is plan
    low = LocalStyleLoss(style, matching=MatchingParams(match_every=2, search_dim=4, reuse_min_patches=0),
                         evaluations=9, search=SearchSettings(search_dtype=torch.float16))
    assert low.matcher.searched_bank is not None and low.matcher.searched_bank.dtype == torch.float16


def feature_maps(seed: int, count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 4, 9, 9, generator=generator) for _ in range(count)]


def frozen_match_loss(loss: LocalStyleLoss, matched_on: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The local loss of `features` against the exact matches of `matched_on`."""
    index = nearest_patches(extract_patches(matched_on, 3), loss.bank.normalized)
    return mrf_loss(features, MRFTarget(loss.bank, index, 9, 9))


def test_matches_are_reused_for_match_every_evaluations_then_refreshed():
    style, first, second, third, fourth = feature_maps(3, 5)
    loss = LocalStyleLoss(style, matching=matching(match_every=3, search_dim=0))
    values = [loss(features) for features in (first, second, third, fourth)]
    assert torch.allclose(values[1], frozen_match_loss(loss, first, second))
    assert torch.allclose(values[2], frozen_match_loss(loss, first, third))
    assert not torch.allclose(values[2], exact_mrf(third, loss.bank)), "reuse must differ from a fresh search"
    assert torch.allclose(values[3], exact_mrf(fourth, loss.bank)), "the 4th evaluation must search again"


def test_the_final_loss_searches_exactly_with_exact_level_end_even_where_the_reduced_search_errs():
    style, *others = feature_maps(4, 9)
    loss = LocalStyleLoss(style, matching=matching(match_every=2, search_dim=2, search_candidates=1,
                                                   exact_level_end=True))
    approximate = [loss(features) for features in others[:-1] for _ in range(2)]
    reduced = loss.matcher.reduced
    assert reduced is not None
    searched = certified_nearest_patches(extract_patches(others[-2], 3), loss.bank.normalized, reduced, 1)
    assert not searched.certified.all(), "the test needs a reduced search that can err"
    refreshed = zip(approximate[::2], others[:-1], strict=True)  # the evaluations that searched, their maps
    assert not all(torch.allclose(value, exact_mrf(f, loss.bank)) for value, f in refreshed)
    assert torch.allclose(loss(others[-1], final=True), exact_mrf(others[-1], loss.bank))


def test_the_level_end_refresh_searches_every_patch_and_keeps_better_current_matches():
    """Without exact_level_end the last refresh is the reduced search over every patch (no
    propagation, whatever the step), and a patch whose current match scores higher keeps it."""
    style, synthesis, drift = feature_maps(8, 3)
    loss = LocalStyleLoss(style, matching=matching(match_every=3, search_dim=2, search_candidates=1, search_step=2),
                          evaluations=9)
    assert loss.schedule.level_end == "reduced_all"
    current = nearest_patches(extract_patches(synthesis, 3), loss.bank.normalized)
    drifted = synthesis + 0.5 * drift
    found = loss.matcher.match(drifted, "reduced_all", current)
    reduced = loss.matcher.reduced
    assert reduced is not None
    searched = approximate_nearest_patches(extract_patches(drifted, 3), loss.bank.normalized, reduced, 1)

    def scores(index: torch.Tensor) -> torch.Tensor:
        return (normalize_patches(extract_patches(drifted, 3)) * loss.bank.normalized[index]).sum(dim=1)

    assert torch.allclose(scores(found), torch.maximum(scores(searched), scores(current)))
    assert not torch.equal(found, searched) and not torch.equal(found, current), "both sources must contribute"


def test_match_every_one_is_the_exact_mode_without_a_reduced_bank():
    style, features = feature_maps(5, 2)
    loss = LocalStyleLoss(style, matching=matching(match_every=1, search_dim=2))
    assert loss.matcher.reduced is None
    assert torch.allclose(loss(features), exact_mrf(features, loss.bank))


def test_banks_below_the_reuse_threshold_match_exactly_at_every_evaluation():
    style, first, second = feature_maps(6, 3)
    small = LocalStyleLoss(style, matching=matching(match_every=10, search_dim=2, reuse_min_patches=50))  # 49 patches
    large = LocalStyleLoss(style, matching=matching(match_every=10, search_dim=2, reuse_min_patches=49))
    assert (small.schedule.match_every, small.matcher.reduced) == (1, None)
    assert large.schedule.match_every == 10 and large.matcher.reduced is not None
    small(first)
    assert torch.allclose(small(second), exact_mrf(second, small.bank))


SEARCH_LETTERS = {"exact": "E", "reduced": "R", "reduced_all": "A", None: "."}


@pytest.mark.parametrize(("match_every", "evaluations", "exact_level_end", "expected"), [
    (3, 10, False, "R.R.R..A.."),  # reduced refreshes evenly spaced, the last 3 on a search of every patch
    (4, 10, False, "R..R..A..."),
    (5, 10, True, "R....E...."),  # the level-end refresh exact on request
    (10, 100, False, ("R" + "." * 9) * 9 + "A" + "." * 9),
    (20, 10, False, "A........."),  # fewer evaluations than match_every: one search of every patch
    (1, 4, False, "EEEE"),  # the paper's mode
    (3, None, False, "R..R..R..R"),  # no planned end of level
])
def test_planned_search_schedule(match_every, evaluations, exact_level_end, expected):
    style = feature_maps(7, 1)[0]
    loss = LocalStyleLoss(style, matching=matching(match_every=match_every, search_dim=2,
                                                   exact_level_end=exact_level_end), evaluations=evaluations)
    kinds = "".join(SEARCH_LETTERS[loss.schedule.search_at(evaluation)] for evaluation in range(len(expected)))
    assert kinds == expected
    changes = loss.schedule.changes(len(expected))
    if match_every == 1:
        assert changes == frozenset(), "exact matching at every evaluation is one function throughout"
    else:
        assert changes == {number for number, kind in enumerate(expected) if kind != "." and number > 0}


@pytest.mark.parametrize(("exact_level_end", "level_end"), [(False, "reduced_all"), (True, "exact")])
def test_each_level_ends_on_the_level_end_refresh(stylizer, monkeypatch, exact_level_end, level_end):
    """A real synthesis searches on the schedule: with match_every K the last K evaluations
    of a level use the level-end refresh's matches, and the result's losses are matched
    the same way."""
    searches: list[str] = []
    original = PatchMatcher.match

    def recording(self: PatchMatcher, features: torch.Tensor, search: str = "exact",
                  current: torch.Tensor | None = None) -> torch.Tensor:
        searches.append(search)
        return original(self, features, search, current)

    monkeypatch.setattr(PatchMatcher, "match", recording)
    content, style = demo_image("content/cat_chelsea.png", 48), demo_image("style/texture_zebra.jpg", 48)
    params = FusionParams(size=None, levels=2, iterations=6).with_overrides(
        match_every=4, search_dim=8, reuse_min_patches=0, exact_level_end=exact_level_end)
    result = stylizer(content, style, params)
    assert result.evaluations == 14  # 6 steps per level, each evaluated, and the start
    level = ["reduced", level_end]  # the reduced search at evaluation 0, the level end's at 7 - 4 = 3
    assert searches == level + level + [level_end]


@pytest.mark.parametrize("field, value", [("search_dim", -1), ("search_candidates", 0), ("reuse_min_patches", -1)])
def test_impossible_search_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        MatchingParams(**{field: value})
    with pytest.raises(ValueError, match=field):
        FusionParams().with_overrides(**{field: value})
