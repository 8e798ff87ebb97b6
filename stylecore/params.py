"""The paper's hyper-parameters in one typed object.

Each default cites where it comes from: the paper (Zhao et al., "Image Neural Style
Transfer with Global and Local Optimization Fusion", IEEE Access 2019) or, where the
paper defers to it, CNNMRF (Li & Wand 2016, the paper's ref [18]).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class FusionParams:
    """Everything that shapes one synthesis; immutable so it can be logged and hashed."""

    # Paper Sec. IV ("we set alpha_1 = 20, alpha_2 = 1e-4 and alpha_3 = 20"), Eq. (1).
    alpha_global: float = 20.0
    alpha_local: float = 1e-4
    alpha_content: float = 20.0
    # Total-variation weight. The paper does not use one; CNNMRF used 1e-3.
    tv_weight: float = 0.0

    # Paper Sec. V: "layers relu1_2, relu2_2, relu3_3 and relu4_2 are selected" (global).
    global_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_2")
    # Paper Sec. V: "During the local loss part, layer relu3_1 is selected."
    local_layer: str = "relu3_1"
    # Paper Sec. V: "Layer relu3_1 is selected in the content loss part."
    content_layer: str = "relu3_1"
    # Paper Sec. V: "We use 3x3 patches, and we set the stride to one."
    patch_size: int = 3
    patch_stride: int = 1

    # Paper Sec. III: "we synthesize at multiple increasing resolutions" following [18];
    # CNNMRF: 3 levels, each half the next, longest side 384.
    levels: int = 3
    size: int | None = 384
    # Longest side of the style image at the finest level; None means the same as `size`.
    style_size: int | None = None
    # Paper Sec. IV: "we also minimize Equation 1 using backpropagation with L-BFGS";
    # CNNMRF: about 100 iterations per level and an L-BFGS history of 25.
    iterations: int = 100
    lbfgs_history: int = 25
    # Paper Sec. III: "randomly initialize the optimization"; small noise around the mean
    # pixel (std in 0..255 units), the neural-style / CNNMRF convention.
    init_noise: float = 1e-3
    seed: int = 0

    # Local-loss matching (not in the paper; speed only, see BENCHMARKS.md). 1 is the
    # paper's exact mode: an exact search of the style patches at every loss evaluation.
    # K > 1 keeps the matches for up to K evaluations (they move slowly within a level),
    # refreshes them with the reduced search below, and re-matches exactly K evaluations
    # before the end of each level. Default 5: at 512/512 the exact search is ~80% of an
    # exact evaluation; K = 5 ran ~3.9x faster than K = 1 with a final exact objective
    # within 0.4% of the exact run's, while K = 10 left matches stale enough for +2.5%.
    match_every: int = 5
    # Levels whose style bank has fewer patches than this match exactly at every
    # evaluation whatever `match_every` says: there the exact search costs less than
    # ~1/3 of the VGG pass, and at such sizes (80 px tests) reuse cost 4-12% of the
    # final objective. 2048 patches is a style image of about 190 px.
    reuse_min_patches: int = 2048
    # How the refreshes between exact ones search (match_every > 1 only): in the style
    # bank's `search_dim` principal directions (0 = exactly), then re-ranking the
    # `search_candidates` best rows exactly. 128 x 8 found the exact nearest patch for
    # ~99% of the patches at 512/512, ~7x faster than the exact search.
    search_dim: int = 128
    search_candidates: int = 8
    # The reduced search runs on every `search_step`-th row and column of the patch grid
    # only; the other patches take the best of those anchors' matches shifted to them, or
    # of their current match (PatchMatch's propagation; 1 = every patch searched). Step 2
    # made a 512 px synthesis 4.8% faster (a refresh 1.8x cheaper) for a final exact
    # objective 0.85 points higher (+0.48% against the exact run, step 1 -0.37%).
    search_step: int = 2
    # The last refresh of each level (the one `match_every` evaluations before its end)
    # and the final loss search every patch with the reduced search; True makes them exact
    # searches instead. At 512/512 an exact search costs ~4x the VGG pass (~8 s on 2
    # cores) against ~1.8 s for the reduced one, which finds ~99% of the exact nearest
    # patches (BENCHMARKS.md, direction 7).
    exact_level_end: bool = False
    # Working-memory budget of the nearest-patch search, in bytes of similarity scores.
    search_budget_bytes: int = 256 * 2**20

    def __post_init__(self) -> None:
        for name in ("alpha_global", "alpha_local", "alpha_content", "tv_weight", "init_noise"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("patch_size", "patch_stride", "levels", "iterations", "lbfgs_history",
                     "match_every", "search_candidates", "search_step", "search_budget_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("search_dim", "reuse_min_patches"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("size", "style_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
        if not self.global_layers and self.alpha_global > 0:
            raise ValueError("alpha_global > 0 needs at least one global layer")

    def with_overrides(self, **overrides: Any) -> FusionParams:
        """A copy with the given fields changed; `None` values are ignored (CLI/manifest defaults)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer a loss reads, without repeats."""
        return tuple(dict.fromkeys((*self.global_layers, self.local_layer, self.content_layer)))

