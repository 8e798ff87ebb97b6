"""Shared helpers of the benchmarks: demo images, timing, peak memory (the machine header: bench.machine)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.machine import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from stylecore import FusionParams, Stylizer, image_to_tensor, load_image
from stylecore.images import fit_long_side, resize

IMAGES = Path(__file__).resolve().parents[1] / "manifests" / "images"
CONTENT = "content/portrait_astronaut.png"  # 512x512
STYLE = "style/great_wave_hokusai.jpg"  # 485x485, square like the content

# The paper's mode: an exact nearest-patch search at every loss evaluation.
EXACT = FusionParams().with_overrides(match_every=1)
DEFAULT = FusionParams()


def describe_matching(params: FusionParams) -> str:
    """The matching settings a benchmark's header names, e.g. 'match_every=5, search_dim=128, ...'."""
    matching = params.matching
    return (f"match_every={matching.match_every}, search_dim={matching.search_dim}, "
            f"search_candidates={matching.search_candidates}, search_step={matching.search_step}")


def demo_rgb(relative: str, long_side: int) -> torch.Tensor:
    """(1, 3, H, W) RGB 0..1 demo image resized to `long_side`."""
    tensor = image_to_tensor(load_image(IMAGES / relative))
    return resize(tensor, *fit_long_side(*tensor.shape[-2:], long_side))


def network_input(stylizer: Stylizer, relative: str, long_side: int) -> torch.Tensor:
    """A demo image resized and mapped into the network's input space, on the stylizer's device."""
    return stylizer.extractor.normalization(demo_rgb(relative, long_side).to(stylizer.device))


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `function` takes, GPU work included."""
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def vgg_floor(stylizer: Stylizer, image: torch.Tensor, layers: tuple[str, ...]) -> float:
    """Seconds of VGG-19 forward to the deepest of `layers` plus backward to the image: the floor."""
    pixels = image.detach().clone().requires_grad_(True)

    def forward_backward() -> None:
        features = stylizer.extractor(pixels, layers)
        torch.stack([feature.sum() for feature in features.values()]).sum().backward()

    return timed(forward_backward, stylizer.device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (process RSS on the CPU, allocated memory on CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def peak_memory_bytes(device: torch.device) -> int:
    """Peak since `reset_peak_memory`: the process's resident set on the CPU, tensors on CUDA."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()


def current_memory_bytes(device: torch.device) -> int:
    """Memory in use now, measured the same way as `peak_memory_bytes`."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return current_rss_bytes()


def gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, ready to paste into BENCHMARKS.md."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
