"""VGG-19 feature extraction: one forward pass, the named activations, nothing deeper."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from stylecore.weights import Preprocessing, VGGWeights


def _layer_names() -> tuple[str, ...]:
    """Names of torchvision's vgg19().features modules: conv1_1, relu1_1, ..., pool5."""
    names: list[str] = []
    block, conv = 1, 1
    for entry in cfgs["E"]:
        if entry == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return tuple(names)


LAYER_NAMES = _layer_names()
LAYER_INDEX = {name: index for index, name in enumerate(LAYER_NAMES)}

# Caffe VGG-19 convention: BGR, 0..255, minus the ImageNet mean pixel (B, G, R).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def downsampling_of(layer: str) -> int:
    """How many times the input is halved (by max pooling) before `layer`."""
    return sum(1 for name in LAYER_NAMES[: LAYER_INDEX[layer]] if name.startswith("pool"))


class Normalization(nn.Module):
    """Maps RGB 0..1 images (N, 3, H, W) to the network's input space and back."""

    mean: torch.Tensor  # (1, 3, 1, 1) buffers, RGB order
    std: torch.Tensor

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        if preprocessing == "caffe":
            scale, mean = 255.0, torch.tensor(CAFFE_MEAN_BGR[::-1])  # mean in RGB order
            std = torch.ones(3)
        else:
            scale, mean, std = 1.0, torch.tensor(IMAGENET_MEAN_RGB), torch.tensor(IMAGENET_STD_RGB)
        self.bgr = preprocessing == "caffe"
        self.register_buffer("mean", (mean / scale).view(1, 3, 1, 1))
        self.register_buffer("std", (std / scale).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0..1 -> network input."""
        net = (rgb - self.mean) / self.std
        return net.flip(1) if self.bgr else net

    def inverse(self, net: torch.Tensor) -> torch.Tensor:
        """Network input -> RGB 0..1 (unclamped)."""
        rgb = net.flip(1) if self.bgr else net
        return rgb * self.std + self.mean


class VGGFeatures(nn.Module):
    """The conv part of VGG-19 up to the deepest layer needed, frozen, with non-inplace ReLUs.

    The weights are kept channels_last, so every activation comes out channels_last:
    forward+backward is faster on CPU that way (BENCHMARKS.md, direction 4), and the loss terms
    read that layout without copies.
    """

    def __init__(self, weights: VGGWeights, deepest: str = "relu4_2") -> None:
        super().__init__()
        features = make_layers(cfgs["E"])
        for module in features:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        try:
            features.load_state_dict(weights.state_dict, strict=True)
        except RuntimeError as error:
            raise ValueError(f"weights from {weights.source} do not fit VGG-19's conv layers: {error}") from None
        self.layers = features[: LAYER_INDEX[deepest] + 1]
        self.normalization = Normalization(weights.preprocessing)
        self.requires_grad_(False)
        self.eval()
        self.to(memory_format=torch.channels_last)

    def forward(self, net_input: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Activations {name: (N, C, h, w)} of `layers` for an input already in network space."""
        wanted = {LAYER_INDEX[name]: name for name in layers}
        deepest = max(wanted)
        if deepest >= len(self.layers):
            raise ValueError(f"layer {wanted[deepest]} is deeper than this extractor's "
                             f"{LAYER_NAMES[len(self.layers) - 1]}")
        outputs: dict[str, torch.Tensor] = {}
        x = net_input
        for index, module in enumerate(self.layers[: deepest + 1]):
            x = module(x)
            if index in wanted:
                outputs[wanted[index]] = x
        return outputs
