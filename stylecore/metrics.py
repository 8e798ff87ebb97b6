"""How good a result is, measured the same way whatever produced it.

`distances`: unweighted distances to the style and content images (Gram on the global
layers, exact nearest-patch MRF on the local layer, feature MSE on the content layer),
so that global-only, local-only and fusion runs can be put side by side.
`exact_objective`: the weighted terms of Eq. (1) with exact matching, so that runs made
with different matching settings can be compared on what they all minimise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stylecore.images import fit_long_side, resize
from stylecore.losses import content_loss, gram_loss, gram_matrix
from stylecore.matching import nearest_patches, normalize_patches
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
    """The weighted loss terms of `image` (1, 3, H, W, RGB 0..1) under `params`, matched exactly."""
    params = (params or FusionParams()).with_overrides(match_every=1)
    net_image, net_content, net_style = finest_inputs(extractor, image, content, style, params)
    return to_loss_terms(FusionObjective(extractor, net_content, net_style, params).terms(net_image))


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
    matched = bank[nearest_patches(queries, normalize_patches(bank), params.matching.search_budget_bytes)]
    mrf = float((queries - matched).square().mean())
    content_distance = float(content_loss(image_features[params.content_layer],
                                          content_features[params.content_layer]))
    return Distances(gram=gram, mrf=mrf, content=content_distance)
