"""stylecore: the fusion-loss style transfer of Zhao et al. (global Gram + local MRF + content on VGG-19).

Pure algorithm: images and tensors in, tensors out. No Ray, S3 or Parquet here.
"""

from stylecore.images import DEFAULT_MAX_PIXELS, ImageError, image_to_tensor, load_image, tensor_to_image
from stylecore.params import FusionParams
from stylecore.progress import LossTerms, Progress, ProgressCallback
from stylecore.synthesis import (ImageTooSmallError, Level, Stylizer, SynthesisResult, plan_levels,
                                 resolve_device, stylize)
from stylecore.weights import VGGWeights, WeightsError, load_weights

__all__ = [
    "DEFAULT_MAX_PIXELS", "FusionParams", "ImageError", "ImageTooSmallError", "Level", "LossTerms",
    "Progress", "ProgressCallback", "Stylizer", "SynthesisResult", "VGGWeights", "WeightsError",
    "image_to_tensor", "load_image", "load_weights", "plan_levels", "resolve_device", "stylize",
    "tensor_to_image",
]
