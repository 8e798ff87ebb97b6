"""Eq. (1) at one pyramid level: the fusion of global, local and content losses."""

from __future__ import annotations

import torch

from stylecore.losses import total_variation
from stylecore.modules import ContentLoss, GlobalStyleLoss, LocalStyleLoss
from stylecore.params import FusionParams
from stylecore.progress import LossTerms
from stylecore.vgg import VGGFeatures


class FusionObjective:
    """alpha_1 L_global + alpha_2 L_local + alpha_3 L_content (+ TV) for images in network space.

    Targets (Gram matrices, the style patch bank, content features) are computed once,
    at construction. Terms whose weight is zero are not computed at all.
    """

    def __init__(self, extractor: VGGFeatures, content: torch.Tensor, style: torch.Tensor,
                 params: FusionParams) -> None:
        """`content`, `style`: (1, 3, H, W) images already in network space at this level's size."""
        self.extractor, self.params = extractor, params
        self.layers = self._active_layers(params)
        with torch.no_grad():
            style_features = extractor(style, params.layers)
            content_features = extractor(content, (params.content_layer,))
        self.global_loss = GlobalStyleLoss({layer: style_features[layer] for layer in params.global_layers})
        self.local_loss = LocalStyleLoss(style_features[params.local_layer], size=params.patch_size,
                                         stride=params.patch_stride, matching=params.matching,
                                         evaluations=params.iterations)
        self.content_loss = ContentLoss(content_features[params.content_layer])

    @staticmethod
    def _active_layers(params: FusionParams) -> tuple[str, ...]:
        layers: list[str] = []
        if params.alpha_global > 0:
            layers += params.global_layers
        if params.alpha_local > 0:
            layers.append(params.local_layer)
        if params.alpha_content > 0:
            layers.append(params.content_layer)
        return tuple(dict.fromkeys(layers)) or (params.content_layer,)

    def terms(self, image: torch.Tensor, final: bool = False) -> dict[str, torch.Tensor]:
        """Weighted loss terms (0-d tensors) of a (1, 3, H, W) network-space image.

        The local loss matches on its level's schedule (`MatchSchedule.search_at`);
        `final=True` re-matches now as the level-end refresh does (the final loss: exact
        in the paper's mode, the reduced search over every patch otherwise).
        """
        params = self.params
        features = self.extractor(image, self.layers)
        zero = image.new_zeros(())
        return {
            "global": params.alpha_global * self.global_loss(features) if params.alpha_global > 0 else zero,
            "local": (params.alpha_local * self.local_loss(features[params.local_layer], final=final)
                      if params.alpha_local > 0 else zero),
            "content": (params.alpha_content * self.content_loss(features[params.content_layer])
                        if params.alpha_content > 0 else zero),
            "tv": params.tv_weight * total_variation(image) if params.tv_weight > 0 else zero,
        }


def to_loss_terms(terms: dict[str, torch.Tensor]) -> LossTerms:
    """Tensor terms -> floats (one host sync for all of them)."""
    values = torch.stack([terms["global"], terms["local"], terms["content"], terms["tv"]]).tolist()
    return LossTerms(global_=values[0], local=values[1], content=values[2], tv=values[3])
