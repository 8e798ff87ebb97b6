"""How good a result is, measured the same way whatever produced it.

`distances`: unweighted distances to the style and content images (Gram on the global
layers, exact nearest-patch MRF on the local layer, feature MSE on the content layer),
so that global-only, local-only and fusion runs can be put side by side.
`exact_objective`: the weighted terms of Eq. (1) with exact matching, so that runs made
with different matching settings can be compared on what they all minimise.
`structure_score` and `style_ratios`: does a result keep the content's structure, and how
much closer to the style is it than the content was (issue 16's quality measures)?
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylecore.color import rgb_to_ycbcr
from stylecore.images import fit_long_side, resize
from stylecore.losses import content_loss, gram_loss, gram_matrix
from stylecore.matching import SearchSettings, nearest_patches, normalize_patches
from stylecore.objective import FusionObjective, to_loss_terms
from stylecore.params import FusionParams
from stylecore.patches import extract_patches
from stylecore.progress import LossTerms
from stylecore.vgg import VGGFeatures


@dataclass(frozen=True)
class Distances:
    """How far an image is from the style (globally and locally) and from the content."""

    gram: float  # sum over the global layers of the mean squared Gram difference
    mrf: float  # mean squared distance of each patch to its nearest style patch, per element
    content: float  # feature MSE on the content layer


def finest_inputs(extractor: VGGFeatures, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
                  params: FusionParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`image`, `content` and `style` (RGB 0..1) in network space on the extractor's device, sized as
    at the finest synthesis level: the content at the image's size, the style at the image's
    longest side (or `params.style_size`)."""
    device = next(extractor.parameters()).device
    height, width = image.shape[-2:]
    style_height, style_width = fit_long_side(style.shape[-2], style.shape[-1], params.style_size or max(height, width))
    normalize = extractor.normalization
    return (normalize(image.to(device)), normalize(resize(content.to(device), height, width)),
            normalize(resize(style.to(device), style_height, style_width)))


@torch.no_grad()
def exact_objective(extractor: VGGFeatures, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
                    params: FusionParams | None = None) -> LossTerms:
    """The weighted loss terms of `image` (1, 3, H, W, RGB 0..1) under `params`, matched exactly
    (in float32 on any device: no reduced-precision shortlist)."""
    params = (params or FusionParams()).with_overrides(match_every=1)
    net_image, net_content, net_style = finest_inputs(extractor, image, content, style, params)
    search = SearchSettings.for_device(net_image.device, params.matching.search_budget_bytes, reduced_precision=False)
    return to_loss_terms(FusionObjective(extractor, net_content, net_style, params, search=search).terms(net_image))


@torch.no_grad()
def distances(extractor: VGGFeatures, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
              params: FusionParams | None = None) -> Distances:
    """Distances of `image` (1, 3, H, W, RGB 0..1) to `content` and `style` (same format).

    The content is resized to the image's size; the style to the image's longest side
    (or `params.style_size`), as at the finest synthesis level.
    """
    params = params or FusionParams()
    net_image, net_content, net_style = finest_inputs(extractor, image, content, style, params)
    image_features = extractor(net_image, params.layers)
    style_features = extractor(net_style, params.layers)
    content_features = extractor(net_content, (params.content_layer,))

    gram = sum(float(gram_loss(image_features[layer], gram_matrix(style_features[layer])))
               for layer in params.global_layers)
    queries = extract_patches(image_features[params.local_layer], params.patch_size, params.patch_stride)
    bank = extract_patches(style_features[params.local_layer], params.patch_size, params.patch_stride)
    budget = SearchSettings.for_device(queries.device, params.matching.search_budget_bytes).budget_bytes
    matched = bank[nearest_patches(queries, normalize_patches(bank), budget)]
    mrf = float((queries - matched).square().mean())
    content_distance = float(content_loss(image_features[params.content_layer],
                                          content_features[params.content_layer]))
    return Distances(gram=gram, mrf=mrf, content=content_distance)


@dataclass(frozen=True)
class StyleRatios:
    """A result's distances to the style over the content image's own: 1 = no more style than the
    content had, lower = more style."""

    gram: float
    mrf: float


def style_ratios(extractor: VGGFeatures, result: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
                 params: FusionParams | None = None) -> StyleRatios:
    """Gram and MRF `distances` of `result` to `style`, each over those of `content` resized to the
    result's size. All images (1, 3, H, W) RGB 0..1; `params` picks the layers (the paper's by default)."""
    params = params or FusionParams()
    of_result = distances(extractor, result, content, style, params)
    of_content = distances(extractor, resize(content, result.shape[-2], result.shape[-1]), content, style, params)
    return StyleRatios(gram=of_result.gram / of_content.gram, mrf=of_result.mrf / of_content.mrf)


# Sobel's horizontal derivative kernel; its transpose is the vertical one.
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (N, 1, H, W) map, radius 3 sigma, borders reflected (H, W > radius)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(F.conv2d(padded, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))


def edge_map(rgb: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """(N, 3, H, W) RGB 0..1 -> (N, 1, H, W) Sobel gradient magnitude of the luma (BT.601),
    borders replicated, blurred with a Gaussian of `sigma` px."""
    luma = rgb_to_ycbcr(rgb)[:, :1]
    sobel_x = torch.tensor(SOBEL_X, dtype=rgb.dtype, device=rgb.device)
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)
    gradients = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernels)
    return gaussian_blur(gradients.square().sum(dim=1, keepdim=True).sqrt(), sigma)


def structure_score(content: torch.Tensor, result: torch.Tensor, sigma: float = 2.0) -> float:
    """How much of the content's edges the result keeps, -1..1: 1.0 = the same edges, ~0 = unrelated.

    The Pearson correlation of the `edge_map`s (Sobel magnitude of the grey image, Gaussian
    blurred by `sigma` px) of `content` and `result`, (1, 3, H, W) RGB 0..1 each. The content
    is resized to the result's size, so that `sigma` is measured on the result's pixels. 0 when
    either image has no edges at all.
    """
    content = resize(content.double(), result.shape[-2], result.shape[-1])
    x = edge_map(content, sigma).flatten()
    y = edge_map(result.double(), sigma).flatten()
    x, y = x - x.mean(), y - y.mean()
    denominator = float(x.norm() * y.norm())
    return float(x @ y) / denominator if denominator > 0 else 0.0
