"""Unweighted distances of a result to its style and content images, for comparing methods.

They reuse the loss definitions (Gram on the global layers, exact nearest-patch MRF on
the local layer, feature MSE on the content layer) without the alphas, so the results
of global-only, local-only and fusion runs can be put side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stylecore.images import fit_long_side, resize
from stylecore.losses import content_loss, gram_loss, gram_matrix
from stylecore.matching import nearest_patches, normalize_patches
from stylecore.params import FusionParams
from stylecore.patches import extract_patches
from stylecore.vgg import VGGFeatures


@dataclass(frozen=True)
class Distances:
    """How far an image is from the style (globally and locally) and from the content."""

    gram: float  # sum over the global layers of the mean squared Gram difference
    mrf: float  # mean squared distance of each patch to its nearest style patch, per element
    content: float  # feature MSE on the content layer


@torch.no_grad()
def distances(extractor: VGGFeatures, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor,
              params: FusionParams | None = None) -> Distances:
    """Distances of `image` (1, 3, H, W, RGB 0..1) to `content` and `style` (same format).

    The content is resized to the image's size; the style to the image's longest side
    (or `params.style_size`), as at the finest synthesis level.
    """
    params = params or FusionParams()
    device = next(extractor.parameters()).device
    height, width = image.shape[-2:]
    style_height, style_width = fit_long_side(*style.shape[-2:], params.style_size or max(height, width))
    normalize = extractor.normalization
    image_features = extractor(normalize(image.to(device)), params.layers)
    style_features = extractor(normalize(resize(style.to(device), style_height, style_width)), params.layers)
    content_features = extractor(normalize(resize(content.to(device), height, width)), (params.content_layer,))

    gram = sum(float(gram_loss(image_features[layer], gram_matrix(style_features[layer])))
               for layer in params.global_layers)
    queries = extract_patches(image_features[params.local_layer], params.patch_size, params.patch_stride)
    bank = extract_patches(style_features[params.local_layer], params.patch_size, params.patch_stride)
    matched = bank[nearest_patches(queries, normalize_patches(bank), params.search_budget_bytes)]
    mrf = float((queries - matched).square().mean())
    content_distance = float(content_loss(image_features[params.content_layer],
                                          content_features[params.content_layer]))
    return Distances(gram=gram, mrf=mrf, content=content_distance)
