"""The loss terms of Eq. (1) as plain functions on feature maps.

Conventions follow the implementations the paper's weights were tuned for: the Gram
loss as in Gatys et al. / neural-style, the local loss and content loss as in CNNMRF.
Feature maps are (1, C, H, W); patches as in `stylecore.patches`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from stylecore.patches import MRFTarget


class _ScaledGram(torch.autograd.Function):
    """scale * flat @ flat^T for (N, C, L) `flat`, with a backward of one matmul instead of two.

    Autograd would differentiate the product through both operands; since they are the
    same matrix, d(loss)/d(flat) = scale * (grad + grad^T) @ flat in a single product.
    The gradient keeps `flat`'s memory layout (C fastest for channels_last maps).
    """

    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.scale = scale
        return flat @ flat.mT * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        symmetric = (grad + grad.mT) * ctx.scale
        if flat.stride(-2) == 1 and flat.shape[-2] > 1:  # channels_last: (L, C) rows in memory
            return (flat.mT @ symmetric).mT, None
        return symmetric @ flat, None


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) channel correlations, divided by C*H*W (Eq. 2).

    Contiguous and channels_last maps both flatten to (N, C, H*W) without a copy.
    """
    _, c, h, w = features.shape
    gram: torch.Tensor = _ScaledGram.apply(features.flatten(2), 1.0 / (c * h * w))
    return gram


def gram_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the Gram matrices of `features` and the target (Eq. 3)."""
    return F.mse_loss(gram_matrix(features), target_gram.expand(features.shape[0], -1, -1))


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (Eq. 6, torch MSE as in CNNMRF)."""
    return F.mse_loss(features, target)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Half the summed squared differences of neighbouring pixels (neural-style's TV)."""
    core = image[..., :-1, :-1]
    dx = core - image[..., :-1, 1:]
    dy = core - image[..., 1:, :-1]
    return 0.5 * (dx.square().sum() + dy.square().sum())


def mrf_loss(features: torch.Tensor, target: MRFTarget) -> torch.Tensor:
    """Local style loss (Eq. 4/5) of (1, C, H, W) features against their matched style patches.

    Each element's squared distance to its matched patch is weighted by 1 / (number of
    patches covering that position), and the sum halved: the loss whose gradient at
    every position is the average over its patches of (current - matched), CNNMRF's
    update. It equals Eq. (4) / 18 in the interior, up to a term constant in `features`.
    `target` holds the matches: `MRFTarget.nearest(bank, features)` for the exact nearest
    patches (the paper), or whatever a `LocalStyleLoss` refresh found.
    """
    difference = (features - target.mean) * target.covered
    return 0.5 * difference.square().sum() + target.residual
