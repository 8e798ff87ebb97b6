"""Loss modules that hold one pyramid level's style and content targets (as buffers).

The local loss is three small parts: a `MatchSchedule` (which search runs at which loss
evaluation), a `PatchMatcher` (the searches over one level's style patches) and
`LocalStyleLoss`, which asks the one, runs the other and applies `losses.mrf_loss`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from stylecore.losses import content_loss, gram_loss, gram_matrix, mrf_loss
from stylecore.matching import (
    ProjectedBank,
    SearchSettings,
    approximate_nearest_patches,
    nearest_patches,
    project_bank,
    shortlisted_nearest_patches,
)
from stylecore.params import MatchingParams
from stylecore.patches import MRFTarget, PatchBank, extract_patches, memory_format_of, patch_grid
from stylecore.propagation import PropagationPlan, best_candidates, propagated_nearest_patches

SearchKind = Literal["exact", "reduced", "reduced_all"]


class GlobalStyleLoss(nn.Module):
    """Sum over layers of the Gram loss against the style image's Gram matrices (buffers `gram_<layer>`)."""

    def __init__(self, style_features: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.layers = tuple(style_features)
        for layer, features in style_features.items():
            self.register_buffer(f"gram_{layer}", gram_matrix(features).detach())

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([gram_loss(features[layer], self.get_buffer(f"gram_{layer}"))
                            for layer in self.layers]).sum()


class ContentLoss(nn.Module):
    """Feature MSE against the content image's activations (buffer `target`)."""

    target: torch.Tensor

    def __init__(self, content_features: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", content_features.detach())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_loss(features, self.target)


class MatchSchedule:
    """Which search the local loss runs at each loss evaluation of one level (None: reuse the matches).

    `match_every` = 1 is the paper's exact mode: an exact search at every evaluation.
    Otherwise searches run at most every `match_every` evaluations: from evaluation 0 on,
    evenly spaced up to the level-end refresh `match_every` evaluations before the level's
    last (so none is wasted just before it), then none. Refreshes use the reduced search
    when there is one (`reduced`); the level-end refresh, and the final loss, search every
    patch with it, or exactly (`exact_level_end`, or no reduced search).
    """

    def __init__(self, match_every: int, evaluations: int | None, *, reduced: bool, exact_level_end: bool) -> None:
        """`evaluations`: loss evaluations planned for the level; None plans no level-end refresh."""
        self.match_every = match_every
        self.refresh: SearchKind = "reduced" if reduced else "exact"
        exact_end = exact_level_end or not reduced or match_every == 1
        self.level_end: SearchKind = "exact" if exact_end else "reduced_all"
        self.level_end_at = None if evaluations is None else max(0, evaluations - match_every)
        self._refresh_at: set[int] = set()
        if self.level_end_at is not None:
            segments = math.ceil(self.level_end_at / match_every)
            self._refresh_at = {step * self.level_end_at // segments for step in range(segments)}

    def search_at(self, evaluation: int) -> SearchKind | None:
        """The search of the `evaluation`-th loss evaluation (from 0), or None to reuse the last matches."""
        if self.match_every == 1:
            return "exact"
        if evaluation == self.level_end_at:
            return self.level_end
        if self.level_end_at is None:
            return self.refresh if evaluation % self.match_every == 0 else None
        return self.refresh if evaluation in self._refresh_at else None

    def changes(self, evaluations: int) -> frozenset[int]:
        """The evaluations (1 .. `evaluations` - 1) whose refresh changes the matches the loss was
        reused with: from there on the local term is another function, and its values cannot be
        compared with earlier ones (`stylecore.lbfgs.minimize`'s `objective_changes`). Empty in the
        exact mode, whose every evaluation matches afresh: there the loss is one function throughout."""
        if self.match_every == 1:
            return frozenset()
        return frozenset(number for number in range(1, evaluations) if self.search_at(number) is not None)


class PatchMatcher(nn.Module):
    """The nearest style patch of every synthesis patch, by one of three searches over one level's bank.

    "exact" compares every patch with every bank row (Eq. 5). With a reduced bank (the
    bank's `search_dim` principal directions, 0 < `search_dim` < the patch length),
    "reduced_all" searches every patch in those directions and re-ranks `candidates` rows
    exactly, and "reduced" does so on every `step`-th row and column of the patch grid
    only, spreading the matches to the rest by propagation (`stylecore.propagation`).
    The reduced searches never return a worse match than the `current` one.

    `settings` says how the searches run on this device (`SearchSettings`): in reduced
    precision the candidates are scored in `settings.search_dtype` (the exact search
    shortlists `settings.shortlist` rows that way) and always re-ranked in float32. What a
    level needs is built once, here: the reduced bank and its copies in the search precision
    (buffers, as the bank's are), and the propagation plan at the first coherent refresh.
    """

    basis: torch.Tensor | None
    projected: torch.Tensor | None
    residual_bound: torch.Tensor | None
    searched_basis: torch.Tensor | None
    searched_projected: torch.Tensor | None
    searched_bank: torch.Tensor | None

    def __init__(self, bank: PatchBank, *, search_dim: int = 0, candidates: int = 8, step: int = 1,
                 settings: SearchSettings | None = None) -> None:
        super().__init__()
        self.bank = bank
        self.candidates, self.step = candidates, step
        self.settings = settings or SearchSettings.for_device(bank.normalized.device)
        reduced = project_bank(bank.normalized, search_dim) if 0 < search_dim < bank.patch_length else None
        self.register_buffer("basis", None if reduced is None else reduced.basis)
        self.register_buffer("projected", None if reduced is None else reduced.projected)
        self.register_buffer("residual_bound", None if reduced is None else reduced.residual_bound)
        # Copies in the search precision (float32 searches read the buffers above instead).
        low = self.settings.search_dtype if self.settings.reduced_precision else None
        searched = None if reduced is None or low is None else reduced.to_dtype(low)
        self.register_buffer("searched_basis", None if searched is None else searched.basis, persistent=False)
        self.register_buffer("searched_projected", None if searched is None else searched.projected, persistent=False)
        self.register_buffer("searched_bank", None if low is None else bank.normalized.to(low), persistent=False)
        self.plan: PropagationPlan | None = None

    @property
    def reduced(self) -> ProjectedBank | None:
        """The reduced bank (float32), or None where every search is exact."""
        if self.basis is None or self.projected is None or self.residual_bound is None:
            return None
        return ProjectedBank(self.basis, self.projected, self.residual_bound)

    @property
    def searched_reduced(self) -> ProjectedBank | None:
        """The reduced bank in the precision the reduced searches score candidates in."""
        if self.searched_basis is None or self.searched_projected is None or self.residual_bound is None:
            return self.reduced
        return ProjectedBank(self.searched_basis, self.searched_projected, self.residual_bound)

    def match(self, features: torch.Tensor, search: SearchKind = "exact",
              current: torch.Tensor | None = None) -> torch.Tensor:
        """Bank row of the nearest style patch for every patch of (1, C, H, W) `features`, (P,).

        Without a reduced bank every search is exact. `current` (P,): the matches so far.
        """
        bank, reduced, settings = self.bank, self.searched_reduced, self.settings
        blocks = {"budget_bytes": settings.budget_bytes, "query_block": settings.query_block,
                  "bank_block": settings.bank_block}
        queries = extract_patches(features.detach(), bank.size, bank.stride)
        if search == "exact" or reduced is None:
            if self.searched_bank is None:
                return nearest_patches(queries, bank.normalized, settings.budget_bytes)
            return shortlisted_nearest_patches(queries, bank.normalized, self.searched_bank, settings.shortlist,
                                               **blocks)
        if search == "reduced" and self.step > 1 and bank.grid is not None:
            grid = patch_grid(features.shape[-2], features.shape[-1], bank.size, bank.stride)
            if self.plan is None or self.plan.grid != grid:
                self.plan = PropagationPlan(grid, bank.grid, self.step, queries.device)
            return propagated_nearest_patches(queries, grid, bank.normalized, bank.grid, reduced, self.step, current,
                                              self.candidates, plan=self.plan, **blocks)
        found = approximate_nearest_patches(queries, bank.normalized, reduced, self.candidates, **blocks)
        if current is None:
            return found
        return best_candidates(queries, bank.normalized, torch.stack([found, current], dim=1), settings.budget_bytes,
                               settings.query_block)


class LocalStyleLoss(nn.Module):
    """The MRF loss (Eq. 4) against one level's bank of style patches, matched on a schedule.

    Matching is the expensive part, so matches are reused between the searches that
    `schedule` plans and `matcher` runs (see `MatchingParams`). A bank of fewer than
    `matching.reuse_min_patches` rows matches exactly at every evaluation, as does
    `match_every` = 1. `matches` (P,) holds the current matches and `target` the matched
    patches (`MRFTarget`), both refreshed at each search.
    """

    matches: torch.Tensor | None

    def __init__(self, style_features: torch.Tensor, *, size: int = 3, stride: int = 1,
                 matching: MatchingParams = MatchingParams(), evaluations: int | None = None,
                 search: SearchSettings | None = None) -> None:
        """`style_features`: (1, C, Hs, Ws) activations of the style image at the local layer.

        `evaluations`: loss evaluations planned for the level; None plans no level-end refresh.
        `search`: how the searches run (default: `SearchSettings.for_device` of the features'
        device, within `matching.search_budget_bytes`).
        """
        super().__init__()
        bank = PatchBank.from_features(style_features, size, stride)
        match_every = matching.match_every if len(bank) >= matching.reuse_min_patches else 1
        search = search or SearchSettings.for_device(style_features.device, matching.search_budget_bytes)
        self.matcher = PatchMatcher(bank, search_dim=matching.search_dim if match_every > 1 else 0,
                                    candidates=matching.search_candidates, step=matching.search_step,
                                    settings=search)
        self.schedule = MatchSchedule(match_every, evaluations, reduced=self.matcher.reduced is not None,
                                      exact_level_end=matching.exact_level_end)
        self.register_buffer("matches", None)
        self.target: MRFTarget | None = None
        self._evaluation = 0

    @property
    def bank(self) -> PatchBank:
        return self.matcher.bank

    def forward(self, features: torch.Tensor, final: bool = False) -> torch.Tensor:
        """Local loss of (1, C, H, W) features; `final=True` re-matches now as the level-end refresh does."""
        search = self.schedule.level_end if final else self.schedule.search_at(self._evaluation)
        self._evaluation += 1
        if search is not None:
            self.matches = self.matcher.match(features, search, self.matches)
            self.target = MRFTarget(self.bank, self.matches, features.shape[-2], features.shape[-1],
                                    memory_format_of(features))
        if self.target is None:
            raise RuntimeError("no matches yet: every schedule searches at evaluation 0")
        return mrf_loss(features, self.target)
