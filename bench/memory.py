"""Peak memory: a whole 1024/1024 synthesis, and the nearest-patch search's working memory
against the style image's size.

1. The default pyramid at 1024 px (style 1024 px too) for `--iterations` evaluations per
   level (a few are enough: memory does not grow with iterations), peak process memory.
2. For style images of growing size and fixed queries (a 512 px synthesis), the memory
   each search adds on top of what is resident before it (the bank itself included in
   neither), with the default budget and a smaller one: it stays within the budget
   however large the bank is.

    .venv/bin/python -m bench.memory [--size 1024] [--iterations 3]
"""

from __future__ import annotations

import argparse
import ctypes
from collections.abc import Callable

import torch

from bench.common import (
    CONTENT,
    DEFAULT,
    STYLE,
    current_memory_bytes,
    demo_rgb,
    gib,
    network_input,
    peak_memory_bytes,
    print_table,
    reset_peak_memory,
)
from bench.machine import print_machine
from stylecore import FusionParams, Stylizer
from stylecore.matching import (
    SearchSettings,
    approximate_nearest_patches,
    nearest_patches,
    normalize_patches,
    project_bank,
)
from stylecore.patches import extract_patches


def release_free_memory(device: torch.device) -> None:
    """Hand freed heap memory back to the system, so resident memory is memory in use."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def added_peak(function: Callable[[], object], device: torch.device) -> int:
    """Bytes by which `function` raises the peak above what is in use before it."""
    release_free_memory(device)
    before = current_memory_bytes(device)
    reset_peak_memory(device)
    function()
    return peak_memory_bytes(device) - before


def whole_synthesis(stylizer: Stylizer, size: int, iterations: int) -> None:
    params = FusionParams(size=size, iterations=iterations)
    release_free_memory(stylizer.device)
    baseline = current_memory_bytes(stylizer.device)
    reset_peak_memory(stylizer.device)
    result = stylizer(demo_rgb(CONTENT, size), demo_rgb(STYLE, size), params)
    peak = peak_memory_bytes(stylizer.device)
    print(f"\n1. {size}/{size} synthesis, {params.levels} levels x {iterations} evaluations "
          f"(match_every={params.matching.match_every}, search_dim={params.matching.search_dim}), "
          f"{result.seconds:.0f} s")
    print_table(["what", "memory"], [["process before (weights, libraries)", gib(baseline)],
                                     ["peak during the synthesis", gib(peak)]])


def search_memory(stylizer: Stylizer, style_sizes: list[int], budgets: list[int]) -> None:
    device = stylizer.device
    layer = DEFAULT.local_layer
    with torch.no_grad():
        queries = extract_patches(stylizer.extractor(network_input(stylizer, CONTENT, 512), (layer,))[layer], 3)
    rows = []
    for style_size in style_sizes:
        with torch.no_grad():
            style = stylizer.extractor(network_input(stylizer, STYLE, style_size), (layer,))[layer]
        bank = normalize_patches(extract_patches(style, 3).contiguous())
        projected = project_bank(bank, DEFAULT.matching.search_dim)
        for budget in budgets:
            exact = added_peak(lambda bank=bank, budget=budget: nearest_patches(queries, bank, budget), device)
            reduced = added_peak(
                lambda bank=bank, projected=projected, budget=budget: approximate_nearest_patches(
                    queries, bank, projected, DEFAULT.matching.search_candidates, budget), device)
            rows.append([f"{style_size}", f"{len(bank)}", gib(bank.numel() * bank.element_size()),
                         f"{budget / 2**20:.0f} MiB", f"{exact / 2**20:.0f} MiB", f"{reduced / 2**20:.0f} MiB"])
        del bank, projected
    print(f"\n2. search working memory, {len(queries)} queries (512 px synthesis) x {queries.shape[1]} dims")
    print_table(["style px", "style patches", "normalised bank", "budget", "exact search adds",
                 "reduced search adds"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--style-sizes", type=int, nargs="+", default=[256, 512, 768, 1024])
    parser.add_argument("--skip-synthesis", action="store_true")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    stylizer = Stylizer("caffe", args.device)
    print_machine()
    default_budget = SearchSettings.for_device(stylizer.device, DEFAULT.matching.search_budget_bytes).budget_bytes
    search_memory(stylizer, args.style_sizes, [default_budget, 64 * 2**20])
    if not args.skip_synthesis:
        whole_synthesis(stylizer, args.size, args.iterations)


if __name__ == "__main__":
    main()
