"""Loss modules that hold precomputed style and content targets for one pyramid level."""

from __future__ import annotations

import torch
from torch import nn

from stylecore.losses import MRFTarget, content_loss, extract_patches, gram_loss, gram_matrix
from stylecore.matching import (ApproximateMatch, approximate_nearest_patches, nearest_patches, normalize_patches,
                                project_bank)


class GlobalStyleLoss(nn.Module):
    """Sum over layers of the Gram loss against the style image's Gram matrices."""

    def __init__(self, style_features: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.targets = {layer: gram_matrix(features).detach() for layer, features in style_features.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([gram_loss(features[layer], target) for layer, target in self.targets.items()]).sum()


class LocalStyleLoss(nn.Module):
    """The MRF loss against a fixed bank of style patches (built once per level).

    Matching is the expensive part, so matches are reused for `match_every` evaluations.
    With `match_every` = 1 (the paper's exact mode), or a bank of fewer than
    `reuse_min_patches` rows, every evaluation searches the whole bank exactly. Otherwise
    the scheduled refreshes use the reduced-dimension search (`search_dim` principal
    directions, `search_candidates` re-ranked exactly), and `forward(..., refresh=True)`
    forces an exact search (end of a level, final loss).
    """

    def __init__(self, style_features: torch.Tensor, size: int = 3, stride: int = 1,
                 match_every: int = 1, budget_bytes: int = 256 * 2**20,
                 search_dim: int = 0, search_candidates: int = 8, reuse_min_patches: int = 0) -> None:
        """`style_features`: (1, C, Hs, Ws) activations of the style image at the local layer.

        `search_dim` = 0, or at least the patch length C*size*size, always searches exactly.
        """
        super().__init__()
        self.size, self.stride = size, stride
        self.bank = extract_patches(style_features.detach(), size, stride).contiguous()
        self.normalized_bank = normalize_patches(self.bank)
        self.match_every = match_every if self.bank.shape[0] >= reuse_min_patches else 1
        self.budget_bytes, self.search_candidates = budget_bytes, search_candidates
        reduced = self.match_every > 1 and 0 < search_dim < self.bank.shape[1]
        self.projected_bank = project_bank(self.normalized_bank, search_dim) if reduced else None
        self.last_search: ApproximateMatch | None = None
        self._target: MRFTarget | None = None
        self._age = 0

    def match(self, features: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """Index into the bank of the nearest style patch for every patch of `features`, (P,).

        `exact=False` uses the reduced-dimension search where this loss has one and keeps
        its certificate in `last_search`.
        """
        queries = extract_patches(features.detach(), self.size, self.stride)
        if exact or self.projected_bank is None:
            return nearest_patches(queries, self.normalized_bank, self.budget_bytes)
        self.last_search = approximate_nearest_patches(queries, self.normalized_bank, self.projected_bank,
                                                       self.search_candidates, self.budget_bytes)
        return self.last_search.index

    def forward(self, features: torch.Tensor, refresh: bool = False) -> torch.Tensor:
        """Local loss of (1, C, H, W) features; `refresh=True` re-matches now, exactly."""
        if refresh or self._target is None or self._age >= self.match_every:
            matched = self.bank[self.match(features, exact=refresh)]
            self._target = MRFTarget(matched, features.shape[-2], features.shape[-1], self.size, self.stride)
            self._age = 0
        self._age += 1
        return self._target.loss(features)


class ContentLoss(nn.Module):
    """Feature MSE against the content image's activations."""

    def __init__(self, content_features: torch.Tensor) -> None:
        super().__init__()
        self.target = content_features.detach()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_loss(features, self.target)
