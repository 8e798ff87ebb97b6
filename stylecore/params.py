"""The paper's hyper-parameters in one typed object, and the local loss's matching settings in another.

Each default cites where it comes from: the paper (Zhao et al., "Image Neural Style
Transfer with Global and Local Optimization Fusion", IEEE Access 2019), where the paper
defers to it CNNMRF (Li & Wand 2016, the paper's ref [18]), or for the matching settings,
which only trade speed against exactness, the section of BENCHMARKS.md that measured them.
Torch-free, so that a command line or a batch driver can read the defaults cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

LocalNormalization = Literal["mean", "sum"]
# The longest side (px) at which the alphas are calibrated: see `FusionParams.style_size_exponent`.
REFERENCE_SIZE = 384
Initialization = Literal["content", "noise"]


@dataclass(frozen=True)
class MatchingParams:
    """How the local loss finds each synthesis patch's nearest style patch (not in the paper: speed only).

    The paper searches every style patch exactly at every loss evaluation; `match_every=1`
    does that. Larger values keep the matches for up to `match_every` evaluations and
    refresh them with a reduced search; `stylecore.modules.MatchSchedule` is the schedule.
    """

    # 1 is the paper's exact mode. K > 1 keeps the matches for up to K evaluations (they move
    # slowly within a level) and refreshes them with the reduced search below. 5 ends near the
    # exact run's objective at several times its speed, where 10 left matches stale enough to
    # drift (BENCHMARKS.md, "End to end: default against exact" and "Matching configurations").
    match_every: int = 5
    # Levels whose style bank has fewer patches than this match exactly at every evaluation
    # whatever `match_every` says: there the exact search is cheap next to the VGG pass, and
    # reusing matches cost more of the final objective than at full size. 2048 patches is a
    # style image of about 190 px.
    reuse_min_patches: int = 2048
    # The refreshes search in the style bank's `search_dim` principal directions (0 = exactly),
    # then re-rank the `search_candidates` best rows exactly: 128 x 8 finds the exact nearest
    # patch for nearly every patch at a fraction of the exact search's cost (BENCHMARKS.md,
    # "The search's directions", direction 1).
    search_dim: int = 128
    search_candidates: int = 8
    # The reduced search runs on every `search_step`-th row and column of the patch grid only;
    # the other patches take the best of those anchors' matches shifted to them, or of their
    # current match (PatchMatch's propagation; 1 = every patch searched). Step 2 made a 512 px
    # synthesis faster for a final objective as close to the exact one (BENCHMARKS.md, direction 6).
    search_step: int = 2
    # The last refresh of each level (the one `match_every` evaluations before its end) and the
    # final loss search every patch with the reduced search; True makes them exact searches,
    # which cost several VGG passes at 512 px and ended no better (BENCHMARKS.md, direction 7).
    exact_level_end: bool = False
    # Working-memory budget of the nearest-patch search, in bytes of similarity scores: memory
    # stays flat whatever the style's size (BENCHMARKS.md, "Memory"). Changes speed, not results.
    # None: the device's (`stylecore.matching.SearchSettings.for_device`): 256 MiB on a CPU,
    # one block per search on a GPU (up to 4 GiB).
    search_budget_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("match_every", "search_candidates", "search_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.search_budget_bytes is not None and self.search_budget_bytes < 1:
            raise ValueError(f"search_budget_bytes must be >= 1 or None, got {self.search_budget_bytes!r}")
        for name in ("search_dim", "reuse_min_patches"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


MATCHING_FIELDS = frozenset(item.name for item in fields(MatchingParams))


@dataclass(frozen=True)
class FusionParams:
    """Everything that shapes one synthesis; immutable so it can be logged and hashed.

    The defaults depart from the paper where its settings lose the content in our
    implementation (issue 16; BENCHMARKS.md, "Quality: default against the paper's
    settings"): the local term is a mean, the synthesis starts from the content, the content
    term reads relu2_1, the alphas are retuned and the style weights scale with the result's
    size. `FusionParams.paper()` gives the paper's exact settings.
    """

    # Eq. (1)'s weights. The paper (Sec. IV: "we set alpha_1 = 20, alpha_2 = 1e-4 and
    # alpha_3 = 20") tuned them for a summed local term and a relu3_1 content term; with the
    # paper's settings our results lose the content entirely (structure score 0.06..0.26 on
    # the shipped pairs at 384 px). Measured on the shipped pairs at 384 px with "mean",
    # content init and the relu2_1 content layer (BENCHMARKS.md, "Quality: default against
    # the paper's settings"): global 5, local 15 and content 35 keep the content and paint it
    # in the style (11 of issue 16's 12 targets); content 20 lost the cat under the zebra's
    # stripes (structure 0.32), content 50 kept it (0.59) but took less of the Great Wave's
    # patches than the target (MRF ratio 0.87).
    alpha_global: float = 5.0
    alpha_local: float = 15.0
    alpha_content: float = 35.0
    # Total-variation weight. The paper does not use one; CNNMRF used 1e-3. It blurred the
    # results without keeping more structure (issue 16 exploration).
    tv_weight: float = 0.0
    # Multiplies both style weights (alpha_global and alpha_local) against the content term:
    # one knob for "more / less style", 1.0 = the alphas as given.
    style_strength: float = 1.0
    # The alphas are calibrated at REFERENCE_SIZE (384 px); a result whose longest side is L
    # gets both style weights times (L / 384) ** style_size_exponent, so that it has the same
    # look at every size. With fixed weights a 192 px result took far more style than a
    # 384 px one (the astronaut vanished under the zebra's stripes) and a 768 px one less:
    # every term is a mean, but a small image's features are further from the style's. On
    # the shipped pairs (issue 16 size grid, BENCHMARKS.md "Quality: the same look at every
    # size") 192 px matched the 384 px look at about 0.55x the style, 256 px at 0.72x,
    # 768 px at 1.45x and 1024 px at 1.75x; 0.7 is within 15% of each. 0 = the same weights
    # at every size (the paper).
    style_size_exponent: float = 0.7
    # "sum" is the paper's Eq. (4) (CNNMRF's summed local term, so its weight against the
    # mean-squared content term grows with the image's area: the paper's a2 means a 4x
    # stronger style at 768 than at 384 px). "mean" multiplies it by 2 / (C*H*W) of the
    # local layer's map at each level, the content MSE's scale, so a weight means the same
    # at every size. The two map as alpha_local_mean = alpha_local_sum * C*H*W / 2 (relu3_1,
    # C = 256, at a 384x384 image's 96x96 map: the paper's 1e-4 is 118 in "mean").
    local_normalization: LocalNormalization = "mean"

    # Paper Sec. V: "layers relu1_2, relu2_2, relu3_3 and relu4_2 are selected" (global).
    global_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_2")
    # Paper Sec. V: "During the local loss part, layer relu3_1 is selected."
    local_layer: str = "relu3_1"
    # Paper Sec. V: "Layer relu3_1 is selected in the content loss part." The default reads the
    # content one layer lower, on relu2_1 (issue 16 exploration at 384 px, BENCHMARKS.md,
    # "Quality"): there the content term keeps the content's edges without holding the
    # relu3_1 features the local term rewrites into style patches, so every shipped pair gets
    # more structure at the same patch style (cat x zebra at MRF ratio 0.74: structure 0.59
    # against 0.48 on relu3_1; coffee x Great Wave 0.83 / 0.74 against 0.77 / 0.92).
    # relu4_2 (Gatys) kept less structure at every weight tried, relu1_2 no more than relu2_1.
    content_layer: str = "relu2_1"
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
    # Where the coarsest level starts: "noise" is the paper's (Sec. III, above); "content"
    # starts from the content image plus that noise, CNNMRF's default for transfer, which
    # kept more of the content's structure at the same weights (issue 16 exploration).
    init: Initialization = "content"
    # Luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors in neural
    # style transfer", the paper's ref [12]): stylize the luminance and keep the content's
    # colours (`stylecore.color`). Off by default, as in the paper.
    preserve_color: bool = False

    # How the local loss matches patches: speed only, see MatchingParams.
    matching: MatchingParams = field(default_factory=MatchingParams)

    def __post_init__(self) -> None:
        for name in ("alpha_global", "alpha_local", "alpha_content", "tv_weight", "init_noise", "style_strength"):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("patch_size", "patch_stride", "levels", "iterations", "lbfgs_history"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("size", "style_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
        for name, allowed in (("local_normalization", LocalNormalization), ("init", Initialization)):
            if getattr(self, name) not in get_args(allowed):
                raise ValueError(f"{name} must be one of {', '.join(map(repr, get_args(allowed)))}, "
                                 f"got {getattr(self, name)!r}")
        if not math.isfinite(self.style_size_exponent):
            raise ValueError(f"style_size_exponent must be a finite number, got {self.style_size_exponent!r}")
        if not self.global_layers and self.alpha_global > 0:
            raise ValueError("alpha_global > 0 needs at least one global layer")

    @classmethod
    def paper(cls) -> FusionParams:
        """The paper's exact settings: Sec. IV's alpha_1 = 20, alpha_2 = 1e-4, alpha_3 = 20 (Eq. 1),
        Eq. (4)'s summed local term, Sec. V's relu3_1 content layer, Sec. III's random
        initialisation and the same weights at every size; the rest as the defaults."""
        return cls(alpha_global=20.0, alpha_local=1e-4, alpha_content=20.0, local_normalization="sum",
                   init="noise", content_layer="relu3_1", style_size_exponent=0.0)

    @property
    def global_weight(self) -> float:
        """The global term's weight at the reference size: alpha_global times the style strength."""
        return self.alpha_global * self.style_strength

    @property
    def local_weight(self) -> float:
        """The local term's weight at the reference size: alpha_local times the style strength."""
        return self.alpha_local * self.style_strength

    def size_factor(self, long_side: int) -> float:
        """What both style weights are multiplied by for a result whose longest side is `long_side` px."""
        return float((long_side / REFERENCE_SIZE) ** self.style_size_exponent)

    def with_overrides(self, **overrides: Any) -> FusionParams:
        """A copy with the given fields changed, by their flat names (`match_every=1` changes
        `matching.match_every`), as command lines and manifests name them; `None` values are
        ignored (an option or a cell left empty)."""
        given = {name: value for name, value in overrides.items() if value is not None}
        matching = {name: given.pop(name) for name in list(given) if name in MATCHING_FIELDS}
        if matching:
            given["matching"] = replace(given.get("matching", self.matching), **matching)
        return replace(self, **given)

    def flattened(self) -> dict[str, Any]:
        """Every setting by its flat name (the matching's inlined), the way results tables and
        output-name fingerprints record them."""
        own = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "matching"}
        return own | {name: getattr(self.matching, name) for name in sorted(MATCHING_FIELDS)}

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer a loss reads, without repeats."""
        return tuple(dict.fromkeys((*self.global_layers, self.local_layer, self.content_layer)))
