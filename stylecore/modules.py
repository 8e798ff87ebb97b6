"""Loss modules that hold precomputed style and content targets for one pyramid level."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from stylecore.losses import content_loss, gram_loss, gram_matrix
from stylecore.matching import ApproximateMatch, approximate_nearest_patches, nearest_patches, project_bank
from stylecore.patches import MRFTarget, PatchBank, extract_patches, memory_format_of, patch_grid
from stylecore.propagation import best_candidates, propagated_nearest_patches


class GlobalStyleLoss(nn.Module):
    """Sum over layers of the Gram loss against the style image's Gram matrices."""

    def __init__(self, style_features: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.targets = {layer: gram_matrix(features).detach() for layer, features in style_features.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([gram_loss(features[layer], target) for layer, target in self.targets.items()]).sum()


SearchKind = Literal["exact", "reduced", "reduced_all", "none"]


class LocalStyleLoss(nn.Module):
    """The MRF loss against a fixed bank of style patches (built once per level).

    Matching is the expensive part, so matches are reused for `match_every` evaluations.
    With `match_every` = 1 (the paper's exact mode), or a bank of fewer than
    `reuse_min_patches` rows, every evaluation searches the whole bank exactly. Otherwise
    the scheduled refreshes use the reduced-dimension search (`search_dim` principal
    directions, `search_candidates` re-ranked exactly), run on every `search_step`-th
    row and column of the patch grid and spread to the rest by propagation
    (`stylecore.propagation`); the last `match_every` of a level's `evaluations` run on
    the matches of a more thorough refresh, the reduced search over every patch (or, with
    `exact_level_end`, an exact search). A refresh keeps a patch's current match wherever
    that scores higher than what the search found.
    """

    def __init__(self, style_features: torch.Tensor, size: int = 3, stride: int = 1,
                 match_every: int = 1, budget_bytes: int = 256 * 2**20,
                 search_dim: int = 0, search_candidates: int = 8, reuse_min_patches: int = 0,
                 evaluations: int | None = None, search_step: int = 1, exact_level_end: bool = False) -> None:
        """`style_features`: (1, C, Hs, Ws) activations of the style image at the local layer.

        `search_dim` = 0, or at least the patch length size*size*C, always searches exactly.
        `evaluations`: loss evaluations planned for the level; None plans no level-end refresh.
        """
        super().__init__()
        self.bank = PatchBank.from_features(style_features, size, stride)
        self.match_every = match_every if len(self.bank) >= reuse_min_patches else 1
        self.budget_bytes, self.search_candidates, self.search_step = budget_bytes, search_candidates, search_step
        reduced = self.match_every > 1 and 0 < search_dim < self.bank.patch_length
        self.projected_bank = project_bank(self.bank.normalized, search_dim) if reduced else None
        self.level_end_search: SearchKind = "exact" if exact_level_end or not reduced else "reduced_all"
        self.last_refresh_at = None if evaluations is None else max(0, evaluations - self.match_every)
        self._reduced_at: set[int] = set()  # evenly spaced before the level-end refresh, when there is one
        if self.last_refresh_at is not None:
            segments = math.ceil(self.last_refresh_at / self.match_every)
            self._reduced_at = {step * self.last_refresh_at // segments for step in range(segments)}
        self.last_search: ApproximateMatch | None = None
        self._matches: torch.Tensor | None = None
        self._target: MRFTarget | None = None
        self._evaluation = 0

    def planned_search(self, evaluation: int) -> SearchKind:
        """How the `evaluation`-th call (from 0) of `forward` matches: the level's schedule.

        Searches at most every `match_every` evaluations: from evaluation 0 on, evenly
        spaced up to the level-end refresh (so none is wasted just before it), then none.
        """
        if self.match_every == 1:
            return "exact"
        if evaluation == self.last_refresh_at:
            return self.level_end_search
        if self.last_refresh_at is None:
            refresh = evaluation % self.match_every == 0
        else:
            refresh = evaluation in self._reduced_at
        if not refresh:
            return "none"
        return "reduced" if self.projected_bank is not None else "exact"

    def match(self, features: torch.Tensor, search: SearchKind = "exact") -> torch.Tensor:
        """Index into the bank of the nearest style patch for every patch of `features`, (P,).

        "exact" searches the whole bank exactly. The reduced searches need a reduced bank
        (else they search exactly) and never return a worse match than the current one:
        "reduced" searches every `search_step`-th row and column and propagates to the
        rest, "reduced_all" (or a step of 1) searches every patch, keeping the search's
        certificate in `last_search`.
        """
        queries = extract_patches(features.detach(), self.bank.size, self.bank.stride)
        if search == "exact" or self.projected_bank is None:
            return nearest_patches(queries, self.bank.normalized, self.budget_bytes)
        if search == "reduced" and self.search_step > 1 and self.bank.grid is not None:
            grid = patch_grid(features.shape[-2], features.shape[-1], self.bank.size, self.bank.stride)
            return propagated_nearest_patches(queries, grid, self.bank.normalized, self.bank.grid,
                                              self.projected_bank, self.search_step, self._matches,
                                              self.search_candidates, self.budget_bytes)
        self.last_search = approximate_nearest_patches(queries, self.bank.normalized, self.projected_bank,
                                                       self.search_candidates, self.budget_bytes)
        if self._matches is None:
            return self.last_search.index
        return best_candidates(queries, self.bank.normalized,
                               torch.stack([self.last_search.index, self._matches], dim=1), self.budget_bytes)

    def forward(self, features: torch.Tensor, final: bool = False) -> torch.Tensor:
        """Local loss of (1, C, H, W) features; `final=True` re-matches now as the level-end refresh does."""
        search = self.level_end_search if final else self.planned_search(self._evaluation)
        self._evaluation += 1
        if search != "none":
            self._matches = self.match(features, search)
            self._target = MRFTarget(self.bank, self._matches, features.shape[-2], features.shape[-1],
                                     memory_format_of(features))
        assert self._target is not None, "the schedule searches at evaluation 0"
        return self._target.loss(features)


class ContentLoss(nn.Module):
    """Feature MSE against the content image's activations."""

    def __init__(self, content_features: torch.Tensor) -> None:
        super().__init__()
        self.target = content_features.detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_loss(features, self.target)
