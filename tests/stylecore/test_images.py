"""Images as tensors: PIL RGB to (1, 3, H, W) in 0..1 and back."""

from __future__ import annotations

import numpy as np
from PIL import Image

from stylecore import image_to_tensor, tensor_to_image


def test_tensor_round_trip_is_lossless():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8))
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 3, 7, 9) and float(tensor.min()) >= 0 and float(tensor.max()) <= 1
    assert np.array_equal(np.asarray(tensor_to_image(tensor)), np.asarray(image))
