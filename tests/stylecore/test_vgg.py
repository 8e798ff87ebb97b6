"""Feature extraction: layer names, one pass that stops at the deepest layer, no in-place corruption."""

from __future__ import annotations

import torch

from stylecore import load_weights
from stylecore.vgg import LAYER_INDEX, Normalization, VGGFeatures, downsampling_of


def test_layer_indices_match_torchvision_features():
    expected = {"relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_3": 15,
                "relu4_1": 20, "relu4_2": 22, "pool1": 4, "conv4_2": 21}
    assert {name: LAYER_INDEX[name] for name in expected} == expected
    assert downsampling_of("relu3_1") == 2 and downsampling_of("relu4_2") == 3


def test_extractor_stops_at_the_deepest_layer_and_keeps_pre_relu_outputs_intact():
    extractor = VGGFeatures(load_weights("caffe"), deepest="relu3_1")
    assert len(extractor.layers) == LAYER_INDEX["relu3_1"] + 1
    image = torch.randn(1, 3, 32, 40) * 50
    features = extractor(image, ("conv2_1", "relu2_1", "relu3_1"))
    assert features["relu3_1"].shape == (1, 256, 8, 10)
    assert (features["conv2_1"] < 0).any(), "an in-place ReLU would have clipped the captured conv output"
    assert torch.equal(features["relu2_1"], features["conv2_1"].clamp_min(0))
    assert not any(parameter.requires_grad for parameter in extractor.parameters())


def test_caffe_normalization_is_bgr_0_255_minus_mean_and_inverts():
    normalization = Normalization("caffe")
    rgb = torch.rand(1, 3, 4, 5)
    net = normalization(rgb)
    expected_blue = rgb[:, 2] * 255 - 103.939
    assert torch.allclose(net[:, 0], expected_blue, atol=1e-4)
    assert torch.allclose(normalization.inverse(net), rgb, atol=1e-6)


def test_imagenet_normalization_inverts():
    normalization = Normalization("imagenet")
    rgb = torch.rand(1, 3, 4, 5)
    assert torch.allclose(normalization.inverse(normalization(rgb)), rgb, atol=1e-6)
