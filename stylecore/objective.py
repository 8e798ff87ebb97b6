"""Eq. (1) at one pyramid level: the fusion of global, local and content losses."""

from __future__ import annotations

import torch

from stylecore.losses import total_variation
from stylecore.matching import SearchSettings
from stylecore.modules import ContentLoss, GlobalStyleLoss, LocalStyleLoss
from stylecore.params import FusionParams
from stylecore.progress import LossTerms
from stylecore.vgg import VGGFeatures

TERMS = ("global", "local", "content", "tv")


class FusionObjective:
    """alpha_1 L_global + alpha_2 L_local + alpha_3 L_content (+ TV) for images in network space.

    Both style weights are times `params.style_strength` and `params.size_factor` of the
    result's longest side; the local term is the paper's sum, or that times 2 / (C*H*W) of the
    local layer's map (`params.local_normalization` "mean", the content MSE's scale at every size).

    Targets (Gram matrices, the style patch bank, content features) are computed once, at
    construction, and only for terms whose weight is not zero: a Gatys-only objective
    (local weight 0) holds no patch bank and never searches, one with global weight 0 no
    Gram matrices, and the style image is not even passed through VGG when neither style term
    is on (style_strength 0 turns both off). The loss modules of the terms that are off are None.
    """

    def __init__(self, extractor: VGGFeatures, content: torch.Tensor, style: torch.Tensor,
                 params: FusionParams, *, search: SearchSettings | None = None,
                 result_side: int | None = None) -> None:
        """`content`, `style`: (1, 3, H, W) images already in network space at this level's size.

        `search`: how the local loss's searches run (default: `SearchSettings.for_device` of the
        style's device, within `params.matching.search_budget_bytes`). `result_side`: the longest
        side of the result this level leads to, which sets the style weights' size factor
        (default: this content's own, as at the finest level).
        """
        self.extractor, self.params = extractor, params
        self.size_factor = params.size_factor(result_side or max(content.shape[-2:]))
        global_layers = params.global_layers if params.global_weight > 0 else ()
        style_layers = (*global_layers, *((params.local_layer,) if params.local_weight > 0 else ()))
        with torch.no_grad():
            style_features = extractor(style, tuple(dict.fromkeys(style_layers))) if style_layers else {}
            content_features = extractor(content, (params.content_layer,)) if params.alpha_content > 0 else {}
        self.global_loss = (GlobalStyleLoss({layer: style_features[layer] for layer in global_layers})
                            if global_layers else None)
        self.local_loss = None
        if params.local_weight > 0:
            self.local_loss = LocalStyleLoss(
                style_features[params.local_layer], size=params.patch_size, stride=params.patch_stride,
                matching=params.matching, evaluations=params.iterations + 1, search=search)
        self.content_loss = ContentLoss(content_features[params.content_layer]) if content_features else None
        self.layers = tuple(dict.fromkeys((*style_layers, *content_features)))

    def terms(self, image: torch.Tensor, final: bool = False) -> dict[str, torch.Tensor]:
        """Weighted loss terms (0-d tensors) of a (1, 3, H, W) network-space image.

        The local loss matches on its level's schedule (`MatchSchedule.search_at`);
        `final=True` re-matches now as the level-end refresh does (the final loss: exact
        in the paper's mode, the reduced search over every patch otherwise).
        """
        params = self.params
        features = self.extractor(image, self.layers) if self.layers else {}
        zero = image.new_zeros(())
        return {
            "global": (params.global_weight * self.size_factor * self.global_loss(features)
                       if self.global_loss is not None else zero),
            "local": (self._local_weight(features[params.local_layer])
                      * self.local_loss(features[params.local_layer], final=final)
                      if self.local_loss is not None else zero),
            "content": (params.alpha_content * self.content_loss(features[params.content_layer])
                        if self.content_loss is not None else zero),
            "tv": params.tv_weight * total_variation(image) if params.tv_weight > 0 else zero,
        }

    def _local_weight(self, features: torch.Tensor) -> float:
        """The local term's weight for (1, C, H, W) local-layer features (size factor included): the
        summed loss's, or for "mean" that times 2 / (C*H*W) (a2_mean = a2_sum * C*H*W / 2)."""
        weight = self.params.local_weight * self.size_factor
        if self.params.local_normalization == "sum":
            return weight
        return weight * 2.0 / features[0].numel()


def stack_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """(4,) tensor of the global, local, content and TV terms, in that order, on their device."""
    return torch.stack([terms[name] for name in TERMS])


def to_loss_terms(terms: dict[str, torch.Tensor]) -> LossTerms:
    """Tensor terms -> floats (one host sync for all of them)."""
    return LossTerms.from_tensor(stack_terms(terms))
