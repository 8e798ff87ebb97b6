"""The directions of issue 4, each measured on its own at 512/512, to keep what wins.

1. The reduced-dimension search: principal directions (and a random projection for
   comparison) x candidates re-ranked, against the exact search on realistic queries
   (features of a partly stylized image): seconds, recall of the exact nearest patch,
   mean and worst loss of normalised cross-correlation, certified share.
2. Lower precision of the exact search's matmul (bf16, fp16) on this device.
3. A per-level normalised bank against rebuilding it at every evaluation.
4. channels_last VGG-19: forward+backward and a whole evaluation that reuses matches.
5. torch.compile of the loss terms (Gram, MRF, content) of an evaluation that reuses matches.
6. The coherent search: the reduced search on every 2nd or 3rd row and column of the
   query grid only, propagated to the other queries, against searching every query.

    .venv/bin/python -m bench.directions [--size 512] [--repeats 3] [--sections 1 2 3 4 5 6]
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch

from bench.common import CONTENT, DEFAULT, STYLE, demo_rgb, network_input, print_table, timed
from bench.machine import load_average, print_machine
from stylecore import FusionParams, Stylizer
from stylecore.matching import (
    ProjectedBank,
    approximate_nearest_patches,
    certified_nearest_patches,
    nearest_patches,
    normalize_patches,
    project_bank,
)
from stylecore.objective import FusionObjective
from stylecore.patches import PatchBank, extract_patches, patch_grid
from stylecore.propagation import propagated_nearest_patches
from stylecore.vgg import VGGFeatures


def median_seconds(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median of `repeats` timed calls after one warm-up call."""
    function()
    return statistics.median(timed(function, device) for _ in range(repeats))


def partly_stylized(stylizer: Stylizer, size: int) -> torch.Tensor:
    """Network-space image of a short half-size synthesis, upsampled: what a finest level starts from."""
    params = FusionParams(size=size // 2, levels=2, iterations=30).with_overrides(match_every=10)
    result = stylizer(demo_rgb(CONTENT, size), demo_rgb(STYLE, size), params)
    upsampled = torch.nn.functional.interpolate(result.image, scale_factor=2, mode="bilinear", align_corners=False)
    return stylizer.extractor.normalization(upsampled.to(stylizer.device))


def random_bank(normalized_bank: torch.Tensor, dim: int) -> ProjectedBank:
    """A random orthonormal projection of the bank, built like `project_bank` builds the principal one."""
    generator = torch.Generator(device=normalized_bank.device).manual_seed(0)
    gaussian = torch.randn(normalized_bank.shape[1], dim, generator=generator, device=normalized_bank.device)
    basis = torch.linalg.qr(gaussian).Q.t().contiguous()
    projected = normalized_bank @ basis.t()
    residual = (normalized_bank.square().sum(dim=1) - projected.square().sum(dim=1)).clamp_min(0).sqrt()
    return ProjectedBank(basis, projected, residual.max())


def reduced_search(stylizer: Stylizer, queries: torch.Tensor, normalized_bank: torch.Tensor,
                   repeats: int) -> None:
    device = stylizer.device
    exact_seconds = median_seconds(lambda: nearest_patches(queries, normalized_bank), device, repeats)
    exact = nearest_patches(queries, normalized_bank)
    unit_queries = normalize_patches(queries)
    best = (unit_queries * normalized_bank[exact]).sum(dim=1)
    rows = [["exact", "-", "-", f"{exact_seconds:.3f}", "1.0x", "100%", "0", "0", "100%"]]
    for kind, dim in [("principal", 32), ("principal", 64), ("principal", 128), ("principal", 256),
                      ("random", 128), ("random", 512)]:
        build = project_bank if kind == "principal" else random_bank
        basis_seconds = median_seconds(lambda build=build, dim=dim: build(normalized_bank, dim), device, 1)
        bank = build(normalized_bank, dim)
        for candidates in (4, 8, 16):
            seconds = median_seconds(
                lambda bank=bank, candidates=candidates: approximate_nearest_patches(
                    queries, normalized_bank, bank, candidates), device, repeats)
            found = certified_nearest_patches(queries, normalized_bank, bank, candidates)
            loss = best - (unit_queries * normalized_bank[found.index]).sum(dim=1)
            rows.append([f"{kind} d={dim} (basis {basis_seconds:.2f} s)", str(candidates), f"{dim}",
                         f"{seconds:.3f}", f"{exact_seconds / seconds:.1f}x",
                         f"{(found.index == exact).float().mean().item():.1%}",
                         f"{loss.mean().item():.1e}", f"{loss.max().item():.3f}",
                         f"{found.certified.float().mean().item():.1%}"])
    print(f"\n1. nearest-patch search, {len(queries)} queries x {len(normalized_bank)} style patches "
          f"x {queries.shape[1]} dims")
    print_table(["search", "candidates", "dims", "seconds", "speed-up", "exact NN found", "mean NCC loss",
                 "worst NCC loss", "certified"], rows)


def precision(stylizer: Stylizer, queries: torch.Tensor, normalized_bank: torch.Tensor, repeats: int) -> None:
    """The exact search's matmul in lower precision, timed on a slice and scaled to the whole search."""
    device = stylizer.device
    block = queries[:32]
    scale = len(queries) / len(block)
    reference = nearest_patches(block, normalized_bank)
    rows = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        left, right = block.to(dtype), normalized_bank.to(dtype)
        seconds = median_seconds(lambda left=left, right=right: (left @ right.t()).max(dim=1), device, 1)
        agree = (left @ right.t()).float().argmax(dim=1) == reference
        rows.append([str(dtype).removeprefix("torch."), f"{seconds:.3f}", f"{seconds * scale:.1f}",
                     f"{agree.float().mean().item():.0%}"])
    print(f"\n2. exact search precision ({len(block)} queries timed, scaled x{scale:.0f} to all of them)")
    print_table(["dtype", "seconds (slice)", "seconds (whole search, scaled)", "same NN as fp32"], rows)


def normalised_bank(stylizer: Stylizer, style_features: torch.Tensor, repeats: int) -> None:
    seconds = median_seconds(lambda: normalize_patches(extract_patches(style_features, 3).contiguous()),
                             stylizer.device, repeats)
    print("\n3. per-level normalised bank")
    print_table(["what", "seconds"], [["extract + normalise the bank (saved at each evaluation once per level)",
                                       f"{seconds:.3f}"]])


class ContiguousFeatures(torch.nn.Module):
    """A VGG-19 whose captured activations are copied to the contiguous (NCHW) layout."""

    def __init__(self, extractor: VGGFeatures) -> None:
        super().__init__()
        self.extractor = extractor
        self.normalization = extractor.normalization

    def forward(self, net_input: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return {name: value.contiguous() for name, value in self.extractor(net_input, layers).items()}


def memory_format(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor, repeats: int) -> None:
    """Contiguous against channels_last VGG-19 weights (the image stays contiguous), interleaved."""
    channels_last = copy.deepcopy(stylizer.extractor).to(memory_format=torch.channels_last)
    extractors: dict[str, torch.nn.Module] = {
        "contiguous": stylizer.extractor, "channels_last weights": channels_last,
        "channels_last weights, activations made contiguous for the losses": ContiguousFeatures(channels_last)}
    params = DEFAULT.with_overrides(match_every=10**6)
    objectives = {name: FusionObjective(extractor, content, style, params)  # type: ignore[arg-type]
                  for name, extractor in extractors.items()}
    floors: dict[str, list[float]] = {name: [] for name in extractors}
    evaluations: dict[str, list[float]] = {name: [] for name in extractors}
    for _ in range(repeats + 1):
        for name, extractor in extractors.items():
            pixels = content.detach().clone().requires_grad_(True)

            def floor(extractor: torch.nn.Module = extractor, pixels: torch.Tensor = pixels, name: str = name) -> None:
                features = extractor(pixels, objectives[name].layers)
                torch.stack([feature.sum() for feature in features.values()]).sum().backward()

            def evaluation(pixels: torch.Tensor = pixels, name: str = name) -> None:
                torch.stack(list(objectives[name].terms(pixels).values())).sum().backward()

            floors[name].append(timed(floor, stylizer.device))
            evaluations[name].append(timed(evaluation, stylizer.device))
    rows = [[name, f"{statistics.median(floors[name][1:]):.3f}", f"{statistics.median(evaluations[name][1:]):.3f}"]
            for name in extractors]
    print("\n4. memory format of VGG-19 (median of interleaved rounds)")
    print_table(["format", "VGG fwd+bwd s", "evaluation reusing matches s"], rows)


def compiled_terms(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor, repeats: int) -> None:
    """Eager against torch.compile'd loss terms on fixed features (the part after VGG)."""
    objective = FusionObjective(stylizer.extractor, content, style, DEFAULT.with_overrides(match_every=10**6))
    params = objective.params
    with torch.no_grad():
        features = {name: value.detach() for name, value in stylizer.extractor(content, objective.layers).items()}
    objective.terms(content)  # builds the matched-patch target once

    def terms(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return (params.alpha_global * objective.global_loss(inputs)
                + params.alpha_local * objective.local_loss(inputs[params.local_layer])
                + params.alpha_content * objective.content_loss(inputs[params.content_layer]))

    compiled = torch.compile(terms)
    leaves = {name: value.clone().requires_grad_(True) for name, value in features.items()}

    def run(function: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> Callable[[], None]:
        return lambda: function(leaves).backward()

    compile_seconds = timed(run(compiled), stylizer.device)
    eager, fused = [], []
    for _ in range(repeats):
        eager.append(timed(run(terms), stylizer.device))
        fused.append(timed(run(compiled), stylizer.device))
    print("\n5. torch.compile of the loss terms (forward+backward after VGG)")
    print_table(["variant", "seconds"], [["eager", f"{statistics.median(eager):.3f}"],
                                         ["compiled", f"{statistics.median(fused):.3f}"],
                                         ["first compiled call (compilation)", f"{compile_seconds:.1f}"]])


def coherent_search(stylizer: Stylizer, synthesis: torch.Tensor, style_features: torch.Tensor,
                    repeats: int) -> None:
    """Step 1 (every query searched) against steps 2 and 3 (anchors searched, the rest propagated),
    with no current matches to fall back on: a level's first refresh, the hardest case."""
    device = stylizer.device
    queries = extract_patches(synthesis, 3).contiguous()
    grid = patch_grid(*synthesis.shape[-2:], 3)
    bank = PatchBank.from_features(style_features, 3)
    projected = project_bank(bank.normalized, DEFAULT.matching.search_dim)
    exact = nearest_patches(queries, bank.normalized)
    unit_queries = normalize_patches(queries)
    best = (unit_queries * bank.normalized[exact]).sum(dim=1)
    exact_seconds = median_seconds(lambda: nearest_patches(queries, bank.normalized), device, repeats)
    rows = [["exact", "-", f"{exact_seconds:.3f}", "1.0x", "100%", "0", "0"]]
    for step in (1, 2, 3):
        def search(step: int = step) -> torch.Tensor:
            if step == 1:
                return approximate_nearest_patches(queries, bank.normalized, projected,
                                                   DEFAULT.matching.search_candidates)
            return propagated_nearest_patches(queries, grid, bank.normalized, bank.grid, projected, step,
                                              candidates=DEFAULT.matching.search_candidates)

        seconds = median_seconds(search, device, repeats)
        found = search()
        loss = best - (unit_queries * bank.normalized[found]).sum(dim=1)
        anchors = "every query" if step == 1 else f"every {step}th row and column"
        matching = DEFAULT.matching
        rows.append([f"reduced d={matching.search_dim} r={matching.search_candidates}", anchors, f"{seconds:.3f}",
                     f"{exact_seconds / seconds:.1f}x", f"{(found == exact).float().mean().item():.1%}",
                     f"{loss.mean().item():.1e}", f"{loss.max().item():.3f}"])
    print(f"\n6. coherent search, {len(queries)} queries ({grid[0]}x{grid[1]}) x {len(bank)} style patches")
    print_table(["search", "searched globally", "seconds", "speed-up", "exact NN found", "mean NCC loss",
                 "worst NCC loss"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    stylizer = Stylizer("caffe", args.device)
    print_machine()
    print(f"{args.size}/{args.size}")
    content = network_input(stylizer, CONTENT, args.size)
    style = network_input(stylizer, STYLE, args.size)
    with torch.no_grad():
        style_features = stylizer.extractor(style, (DEFAULT.local_layer,))[DEFAULT.local_layer]
        synthesis = stylizer.extractor(partly_stylized(stylizer, args.size), (DEFAULT.local_layer,))
    queries = extract_patches(synthesis[DEFAULT.local_layer], 3).contiguous()
    normalized_bank = normalize_patches(extract_patches(style_features, 3).contiguous())
    sections: dict[int, Callable[[], None]] = {
        1: lambda: reduced_search(stylizer, queries, normalized_bank, args.repeats),
        2: lambda: precision(stylizer, queries, normalized_bank, args.repeats),
        3: lambda: normalised_bank(stylizer, style_features, args.repeats),
        4: lambda: memory_format(stylizer, content, style, args.repeats),
        5: lambda: compiled_terms(stylizer, content, style, args.repeats),
        6: lambda: coherent_search(stylizer, synthesis[DEFAULT.local_layer], style_features, args.repeats),
    }
    for section in args.sections:
        sections[section]()
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
