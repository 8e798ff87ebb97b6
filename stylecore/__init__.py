"""stylecore: the fusion-loss style transfer of Zhao et al. (global Gram + local MRF + content on VGG-19).

Pure algorithm: images and tensors in, tensors out. No Ray, S3 or Parquet here.

The public names below are imported on first use, so that the torch-free modules
(`stylecore.params`, `stylecore.imageio`, `stylecore.files`) and the names they hold
(`FusionParams`, `load_image`, ...) do not pay for importing torch: a command line that only
needs the defaults, a batch driver or a report can use them without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "stylecore.imageio": ("DEFAULT_MAX_PIXELS", "ImageError", "load_image"),
    "stylecore.images": ("image_to_tensor", "tensor_to_image"),
    "stylecore.params": ("FusionParams", "MatchingParams"),
    "stylecore.progress": ("LossTerms", "ProgressCallback", "SynthesisProgress"),
    "stylecore.synthesis": ("ImageTooSmallError", "Level", "Stylizer", "SynthesisResult", "plan_levels",
                            "resolve_device", "stylize"),
    "stylecore.weights": ("VGGWeights", "WeightsError", "load_weights"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers ("X as X": re-exported)
    from stylecore.imageio import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
    from stylecore.imageio import ImageError as ImageError
    from stylecore.imageio import load_image as load_image
    from stylecore.images import image_to_tensor as image_to_tensor
    from stylecore.images import tensor_to_image as tensor_to_image
    from stylecore.params import FusionParams as FusionParams
    from stylecore.params import MatchingParams as MatchingParams
    from stylecore.progress import LossTerms as LossTerms
    from stylecore.progress import ProgressCallback as ProgressCallback
    from stylecore.progress import SynthesisProgress as SynthesisProgress
    from stylecore.synthesis import ImageTooSmallError as ImageTooSmallError
    from stylecore.synthesis import Level as Level
    from stylecore.synthesis import Stylizer as Stylizer
    from stylecore.synthesis import SynthesisResult as SynthesisResult
    from stylecore.synthesis import plan_levels as plan_levels
    from stylecore.synthesis import resolve_device as resolve_device
    from stylecore.synthesis import stylize as stylize
    from stylecore.weights import VGGWeights as VGGWeights
    from stylecore.weights import WeightsError as WeightsError
    from stylecore.weights import load_weights as load_weights


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'stylecore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
