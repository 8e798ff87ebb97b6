"""The loss terms of Eq. (1) as plain functions on feature maps.

Conventions follow the implementations the paper's weights were tuned for: the Gram
loss as in Gatys et al. / neural-style, the local loss and content loss as in CNNMRF.
Feature maps are (1, C, H, W); patches are rows of a (P, C*k*k) matrix in
`torch.nn.functional.unfold` order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylecore.matching import nearest_patches, normalize_patches


class _ScaledGram(torch.autograd.Function):
    """scale * flat @ flat^T for (N, C, L) `flat`, with a backward of one matmul instead of two.

    Autograd would differentiate the product through both operands; since they are the
    same matrix, d(loss)/d(flat) = scale * (grad + grad^T) @ flat in a single product.
    The gradient keeps `flat`'s memory layout (C fastest for channels_last maps).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, flat: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.scale = scale
        return flat @ flat.mT * scale

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        symmetric = (grad + grad.mT) * ctx.scale
        if flat.stride(-2) == 1 and flat.shape[-2] > 1:  # channels_last: (L, C) rows in memory
            return (flat.mT @ symmetric).mT, None
        return symmetric @ flat, None


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) channel correlations, divided by C*H*W (Eq. 2).

    Contiguous and channels_last maps both flatten to (N, C, H*W) without a copy.
    """
    n, c, h, w = features.shape
    return _ScaledGram.apply(features.flatten(2), 1.0 / (c * h * w))


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


def extract_patches(features: torch.Tensor, size: int, stride: int = 1) -> torch.Tensor:
    """All size x size patches of a (1, C, H, W) map as rows of a (P, C*size*size) matrix."""
    return F.unfold(features, kernel_size=size, stride=stride)[0].t()


class MRFTarget:
    """The matched style patches of Eq. (4), folded back onto the feature map.

    `mean` is T, the average of the matched patches covering each position, `covered`
    marks positions inside at least one patch, and `residual` the part of the loss that
    does not depend on the synthesis. Precomputing these turns the loss into
    0.5 * ||F - T||^2 + residual, whose gradient F - T is exactly CNNMRF's.
    """

    def __init__(self, matched: torch.Tensor, height: int, width: int, size: int, stride: int) -> None:
        """`matched`: (P, C*size*size) style patch matched to each synthesis patch."""
        with torch.no_grad():
            fold = dict(output_size=(height, width), kernel_size=size, stride=stride)
            columns = matched.t().unsqueeze(0)
            ones = torch.ones(1, size * size, matched.shape[0], dtype=matched.dtype, device=matched.device)
            count = F.fold(ones, **fold)
            self.covered = count > 0
            safe_count = count.clamp_min(1)
            self.mean = F.fold(columns, **fold) / safe_count
            mean_square = F.fold(columns.square(), **fold) / safe_count
            self.residual = 0.5 * (mean_square - self.mean.square()).clamp_min(0).sum()

    def loss(self, features: torch.Tensor) -> torch.Tensor:
        """Eq. (4) in CNNMRF's weighting for (1, C, H, W) features."""
        difference = (features - self.mean) * self.covered
        return 0.5 * difference.square().sum() + self.residual


def mrf_loss(features: torch.Tensor, style_patches: torch.Tensor, size: int = 3, stride: int = 1,
             budget_bytes: int = 256 * 2**20) -> torch.Tensor:
    """Local style loss (Eq. 4/5): each synthesis patch against its nearest style patch.

    Each element's squared distance to its matched patch is weighted by 1 / (number of
    patches covering that position), and the sum halved: the loss whose gradient at
    every position is the average over its patches of (current - matched), CNNMRF's
    update. It equals Eq. (4) / 18 in the interior, up to a term constant in `features`.
    `style_patches`: (Ps, C*size*size), unnormalised.
    """
    queries = extract_patches(features.detach(), size, stride)
    matched = style_patches[nearest_patches(queries, normalize_patches(style_patches), budget_bytes)]
    target = MRFTarget(matched, features.shape[-2], features.shape[-1], size, stride)
    return target.loss(features)
