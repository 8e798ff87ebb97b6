"""Image files without torch: every common mode decoded to upright 8-bit RGB (at full or reduced
scale), bad files refused with the file's name and why, outputs encoded by extension."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylecore.imageio import ImageError, encode_image, image_format_for, load_image
from tests.demo_images import IMAGES


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A minimal PNG written by hand (Pillow cannot write 16-bit RGB or forged headers)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows))
            + chunk(b"IEND", b""))


def saved(tmp_path: Path, image: Image.Image, name: str, **options) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def test_grayscale_becomes_equal_rgb_channels(tmp_path):
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L")
    loaded = pixels(load_image(saved(tmp_path, gray, "gray.png")))
    assert (loaded[..., 0] == np.asarray(gray)).all() and (loaded[..., 1] == loaded[..., 2]).all()


def test_sixteen_bit_grayscale_keeps_its_full_range(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    loaded = pixels(load_image(saved(tmp_path, image, "gray16.png")))
    assert loaded[0, :, 0].tolist() == [0, 128, 255]


def test_sixteen_bit_rgb_png_is_scaled_not_clipped(tmp_path):
    samples = np.array([[[65535, 32896, 0], [0, 0, 65535]]], dtype=">u2")  # 1 row, 2 pixels
    raw = b"\x00" + samples.tobytes()
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_bytes(2, 1, 16, 2, raw))
    loaded = pixels(load_image(path))
    assert loaded[0].tolist() == [[255, 128, 0], [0, 0, 255]]


def test_palette_with_transparency_and_rgba_are_composited_over_white(tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette_path = saved(tmp_path, palette, "palette.png", transparency=0)
    loaded = pixels(load_image(palette_path))
    assert loaded[0, 0].tolist() == [0, 0, 255] and loaded[1, 3].tolist() == [255, 255, 255]

    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 255, 0, 255))
    loaded = pixels(load_image(saved(tmp_path, rgba, "rgba.png")))
    assert loaded[0].tolist() == [[255, 255, 255], [0, 255, 0]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    loaded = pixels(load_image(saved(tmp_path, cmyk, "cmyk.jpg", quality=95)))
    assert np.abs(loaded - [255, 0, 0]).max() <= 8


def test_exif_rotated_photo_is_made_upright(tmp_path):
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    loaded = load_image(saved(tmp_path, stored, "rotated.jpg", exif=exif, quality=95))
    assert loaded.size == (20, 40)
    top, bottom = pixels(loaded)[5, 10], pixels(loaded)[35, 10]
    assert top[0] > 200 and top[2] < 60, "the stored left (red) half must end up on top"
    assert bottom[2] > 200 and bottom[0] < 60


def test_bytes_and_demo_files_load():
    data = (IMAGES / "style" / "texture_brick.png").read_bytes()
    image = load_image(data, name="brick")
    assert image.mode == "RGB" and image.size == (512, 512)


@pytest.mark.parametrize("make, reason", [
    (lambda good: b"hello, I am a text file\n", "not an image"),
    (lambda good: good[: len(good) // 2], "corrupt or truncated"),
    (lambda good: good[:5000] + bytes(b ^ 0x5A for b in good[5000:5200]) + good[5200:], "corrupt or truncated"),
])
def test_bad_files_name_the_file_and_the_reason(tmp_path, make, reason):
    good = (IMAGES / "content" / "cat_chelsea.png").read_bytes()
    path = tmp_path / "bad.png"
    path.write_bytes(make(good))
    with pytest.raises(ImageError, match=reason) as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="file not found") as error:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(error.value)


@pytest.mark.parametrize("side", [9000, 100_000])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(side, side, 8, 2, b"\x00" * 16))  # header claims side x side pixels
    with pytest.raises(ImageError, match="refused") as error:
        load_image(path)
    assert "bomb.png" in str(error.value)


def test_pixel_limit_is_configurable(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (100, 100)), "small.png")
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError, match="more than the limit of 9,999"):
        load_image(path, max_pixels=9_999)


def test_reduced_decoding_fits_the_box_and_keeps_every_conversion(tmp_path):
    """A thumbnail goes through the same decoding: upright, composited, colour-converted, 16-bit scaled."""
    photo = Image.new("RGB", (400, 200), (0, 0, 255))
    photo.paste((255, 0, 0), (0, 0, 200, 200))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    small = load_image(saved(tmp_path, photo, "big.jpg", exif=exif, quality=95), max_side=50)
    assert small.size == (25, 50)
    assert pixels(small)[5, 12][0] > 200, "upright: the stored left (red) half on top"
    cmyk = load_image(saved(tmp_path, Image.new("CMYK", (300, 300), (0, 255, 255, 0)), "cmyk.jpg"), max_side=30)
    assert cmyk.size == (30, 30) and np.abs(pixels(cmyk) - [255, 0, 0]).max() <= 8
    gray16 = Image.fromarray(np.full((80, 120), 65535, dtype=np.uint16))
    assert pixels(load_image(saved(tmp_path, gray16, "gray16.png"), max_side=12)).min() == 255
    assert load_image(saved(tmp_path, Image.new("RGB", (10, 6)), "tiny.png"), max_side=50).size == (10, 6)


def test_reduced_decoding_refuses_bombs_and_names_bad_files(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(9000, 9000, 8, 2, b"\x00" * 16))
    with pytest.raises(ImageError, match=r"bomb\.png: refused"):
        load_image(bomb, max_side=64)
    with pytest.raises(ImageError, match=r"note\.txt: not an image"):
        load_image(b"text", name="note.txt", max_side=64)


def test_outputs_are_encoded_in_the_format_their_extension_names():
    image = Image.new("RGB", (6, 4), (10, 200, 30))
    assert image_format_for("a/b.JPG") == "JPEG" and image_format_for("x.webp") == "WEBP"
    for name, expected in (("out.png", "PNG"), ("out.jpg", "JPEG"), ("out.webp", "WEBP")):
        decoded = Image.open(io.BytesIO(encode_image(image, name)))
        assert decoded.format == expected and decoded.size == (6, 4)
    for name in ("out", "out.unknown", "out.txt"):
        with pytest.raises(ValueError, match="unknown or unwritable image extension"):
            image_format_for(name)


def test_importing_the_torch_free_modules_does_not_import_torch():
    """The batch driver and the reports read and write images, files and parameters without torch."""
    code = ("import sys\nimport stylecore, stylecore.imageio, stylecore.files, stylecore.params\n"
            "from stylecore import load_image, ImageError, FusionParams\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
