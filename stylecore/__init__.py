"""stylecore: the fusion-loss style transfer of Zhao et al. (global Gram + local MRF + content on VGG-19).

Pure algorithm: images and tensors in, tensors out. No Ray, S3 or Parquet here.

The public names below are imported on first use, so that `stylecore.params` (and a
command line that only needs the defaults) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "stylecore.images": ("DEFAULT_MAX_PIXELS", "ImageError", "image_to_tensor", "load_image", "tensor_to_image"),
    "stylecore.params": ("FusionParams", "MatchingParams"),
    "stylecore.progress": ("LossTerms", "ProgressCallback", "SynthesisProgress"),
    "stylecore.synthesis": ("ImageTooSmallError", "Level", "Stylizer", "SynthesisResult", "plan_levels",
                            "resolve_device", "stylize"),
    "stylecore.weights": ("VGGWeights", "WeightsError", "load_weights"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    from stylecore.images import DEFAULT_MAX_PIXELS, ImageError, image_to_tensor, load_image, tensor_to_image
    from stylecore.params import FusionParams, MatchingParams
    from stylecore.progress import LossTerms, ProgressCallback, SynthesisProgress
    from stylecore.synthesis import (
        ImageTooSmallError,
        Level,
        Stylizer,
        SynthesisResult,
        plan_levels,
        resolve_device,
        stylize,
    )
    from stylecore.weights import VGGWeights, WeightsError, load_weights


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'stylecore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
