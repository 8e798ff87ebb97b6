"""Loss modules that hold precomputed style and content targets for one pyramid level."""

from __future__ import annotations

import torch
from torch import nn

from stylecore.losses import MRFTarget, content_loss, extract_patches, gram_loss, gram_matrix
from stylecore.matching import nearest_patches, normalize_patches


class GlobalStyleLoss(nn.Module):
    """Sum over layers of the Gram loss against the style image's Gram matrices."""

    def __init__(self, style_features: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.targets = {layer: gram_matrix(features).detach() for layer, features in style_features.items()}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([gram_loss(features[layer], target) for layer, target in self.targets.items()]).sum()


class LocalStyleLoss(nn.Module):
    """The MRF loss against a fixed bank of style patches (built once per level).

    Matching is the expensive part, so matches may be reused: they are recomputed when
    `refresh=True` is passed, or after `match_every` evaluations.
    """

    def __init__(self, style_features: torch.Tensor, size: int = 3, stride: int = 1,
                 match_every: int = 1, budget_bytes: int = 256 * 2**20) -> None:
        """`style_features`: (1, C, Hs, Ws) activations of the style image at the local layer."""
        super().__init__()
        self.size, self.stride = size, stride
        self.match_every, self.budget_bytes = match_every, budget_bytes
        self.bank = extract_patches(style_features.detach(), size, stride).contiguous()
        self.normalized_bank = normalize_patches(self.bank)
        self._target: MRFTarget | None = None
        self._age = 0

    def match(self, features: torch.Tensor) -> torch.Tensor:
        """Index into the bank of the nearest style patch for every patch of `features`, (P,)."""
        queries = extract_patches(features.detach(), self.size, self.stride)
        return nearest_patches(queries, self.normalized_bank, self.budget_bytes)

    def forward(self, features: torch.Tensor, refresh: bool = False) -> torch.Tensor:
        """Local loss of (1, C, H, W) features."""
        if refresh or self._target is None or self._age >= self.match_every:
            matched = self.bank[self.match(features)]
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
