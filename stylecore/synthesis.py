"""Multi-resolution L-BFGS synthesis: the paper's optimisation of Eq. (1) over pixels.

Three separate parts: the initial image (`initial_image`), the per-level objective
(`stylecore.objective.FusionObjective`) and the optimiser (`stylecore.lbfgs.minimize`).
`Stylizer` ties them together over the pyramid and reads nothing back from the device
until the synthesis ends (unless a progress callback reads the losses).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from PIL import Image

from stylecore.allocator import release_retained_memory, retain_freed_memory
from stylecore.color import luminance_image, with_content_color
from stylecore.imageio import ImageError
from stylecore.images import fit_long_side, image_to_tensor, resize, tensor_to_image
from stylecore.lbfgs import Minimum, minimize
from stylecore.objective import FusionObjective, stack_terms
from stylecore.params import FusionParams
from stylecore.progress import LossTerms, ProgressCallback, SynthesisProgress
from stylecore.vgg import Normalization, VGGFeatures, downsampling_of
from stylecore.weights import VGGWeights, load_weights

ImageInput = Image.Image | torch.Tensor


# A step that more than doubles the loss is rejected and retried shorter (`stylecore.lbfgs`).
# L-BFGS without a line search rises by up to ~1.8x now and then and recovers at once; the
# blow-ups it must stop were 10x to 1e5x (BENCHMARKS.md, "The optimizer").
MAX_RISE = 2.0
# Where the local term's matches are refreshed the loss is another function, and a step's rise
# also holds the change of matches (2.2x measured early in a run from noise, bench.peers' MRF
# run): there the limit is looser until a step is accepted, yet still far below a blow-up.
MAX_RISE_AT_REFRESH = 4.0


class ImageTooSmallError(ValueError):
    """An image is too small: at its own resolution, or for the local loss's patches at the coarsest level."""

    def __init__(self, which: str, message: str) -> None:
        """`which`: "content" or "style", the image at fault."""
        super().__init__(message)
        self.which = which

    def naming(self, content: object, style: object) -> ImageError:
        """This error as an ImageError that starts with the file at fault: `content` or `style`
        (paths, locations, names), whichever `which` says."""
        return ImageError(f"{content if self.which == 'content' else style}: {self}")


@dataclass(frozen=True)
class Level:
    """Sizes (H, W) of the synthesis and of the style image at one pyramid level."""

    height: int
    width: int
    style_height: int
    style_width: int


@dataclass(frozen=True)
class SynthesisResult:
    """The stylized image and what it cost."""

    image: torch.Tensor  # (1, 3, H, W), RGB 0..1, on the CPU: the best iterate of the finest level
    losses: LossTerms  # weighted terms of the returned image, matched as the last level's end matched
    evaluations: int  # loss evaluations over all levels (iterations + 1 per level)
    seconds: float
    device: str
    # True when the returned image's final loss is above the loss its finest level started
    # from, or not finite: a synthesis whose every step made its image worse (the best step is
    # returned, not the unchanged start), which a results table should flag rather than call ok.
    worse_than_start: bool = False
    # L-BFGS steps rejected (and retried shorter) over all levels because they raised the loss
    # more than MAX_RISE times or made it non-finite: a measure of how rough the run was.
    rejected_steps: int = 0

    def to_pil(self) -> Image.Image:
        return tensor_to_image(self.image)


def minimum_side(params: FusionParams) -> int:
    """Smallest image side (pixels) that still gives one local patch and non-empty features."""
    local: int = params.patch_size * 2 ** downsampling_of(params.local_layer)
    others: int = max(2 ** downsampling_of(layer) for layer in params.layers)
    return max(local, others)


def plan_levels(content_size: tuple[int, int], style_size: tuple[int, int],
                params: FusionParams) -> list[Level]:
    """Pyramid sizes, coarsest first, from (H, W) of the content and style images.

    Each level is half the next; the finest has the output size (longest side
    `params.size`, or the content's own size). Raises ImageTooSmallError naming the
    image if it is below the minimum side at its own size (a 1x1 or 5x400 image is refused,
    not enlarged; a 100 px image may be enlarged), or at the coarsest level.
    """
    smallest = minimum_side(params)
    for what, (h, w) in (("content", content_size), ("style", style_size)):
        if min(h, w) < smallest:
            raise ImageTooSmallError(
                what, f"{what} image is too small: it is {w}x{h} px, but {params.patch_size}x{params.patch_size} "
                f"patches on {params.local_layer} need at least {smallest} px per side (an image is never "
                f"enlarged from below that)")
    height, width = content_size if params.size is None else fit_long_side(*content_size, params.size)
    style_long = params.style_size or max(height, width)
    style_height, style_width = fit_long_side(*style_size, style_long)
    levels = []
    for level in range(params.levels):
        factor = 2 ** (params.levels - 1 - level)
        sizes = Level(max(1, round(height / factor)), max(1, round(width / factor)),
                      max(1, round(style_height / factor)), max(1, round(style_width / factor)))
        levels.append(sizes)
    coarsest = levels[0]
    for what, h, w in (("content", coarsest.height, coarsest.width),
                       ("style", coarsest.style_height, coarsest.style_width)):
        if min(h, w) < smallest:
            raise ImageTooSmallError(
                what, f"{what} image is too small: at the coarsest of {params.levels} pyramid levels it is "
                f"{w}x{h} px, but {params.patch_size}x{params.patch_size} patches on {params.local_layer} "
                f"need at least {smallest} px per side (use a larger size or fewer levels)")
    return levels


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; an unavailable device is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested, but CUDA is not available here")
    return device


def as_image_tensor(image: ImageInput) -> torch.Tensor:
    """PIL image or (3, H, W) / (1, 3, H, W) tensor in 0..1 -> (1, 3, H, W) float tensor."""
    if isinstance(image, Image.Image):
        return image_to_tensor(image)
    tensor = image.unsqueeze(0) if image.dim() == 3 else image
    if tensor.dim() != 4 or tensor.shape[:2] != (1, 3):
        raise ValueError(f"expected an RGB image tensor of shape (1, 3, H, W), got {tuple(image.shape)}")
    return tensor.float()


class Stylizer:
    """One VGG-19 on one device, reused for any number of syntheses (what a worker holds).

    On the CPU, `retain_memory` (the default) makes the process keep freed tensor memory
    for reuse (`stylecore.allocator.retain_freed_memory`, process-wide): each evaluation
    is faster at 512 px for some more resident memory (BENCHMARKS.md, direction 9 and
    "Memory"). Free pages go back to the kernel between levels and after a synthesis.
    """

    def __init__(self, weights: str | VGGWeights = "caffe", device: str | torch.device = "auto",
                 retain_memory: bool = True) -> None:
        self.device = resolve_device(device)
        if retain_memory and self.device.type == "cpu":
            retain_freed_memory()
        loaded = load_weights(weights) if isinstance(weights, str) else weights
        self.extractor = VGGFeatures(loaded).to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def __call__(self, content: ImageInput, style: ImageInput, params: FusionParams | None = None,
                 callback: ProgressCallback | None = None) -> SynthesisResult:
        """Stylize `content` with `style`; returns an image of the content's aspect ratio.

        With `params.preserve_color`, the luminances are stylized (`stylecore.color`) and the
        result takes the content's colours; its `losses` are then those of the luminance synthesis.
        """
        params = params or FusionParams()
        started = time.perf_counter()
        content_rgb = as_image_tensor(content).to(self.device)
        style_rgb = as_image_tensor(style).to(self.device)
        if not params.preserve_color:
            return self._synthesize(content_rgb, style_rgb, params, callback, started)
        result = self._synthesize(luminance_image(content_rgb), luminance_image(style_rgb, content_rgb), params,
                                  callback, started)
        colored = with_content_color(result.image, content_rgb.cpu())
        return replace(result, image=colored, seconds=time.perf_counter() - started)

    def _synthesize(self, content_rgb: torch.Tensor, style_rgb: torch.Tensor, params: FusionParams,
                    callback: ProgressCallback | None, started: float) -> SynthesisResult:
        """The pyramid of L-BFGS levels for (1, 3, H, W) RGB 0..1 images on this device."""
        levels = plan_levels((content_rgb.shape[-2], content_rgb.shape[-1]), (style_rgb.shape[-2], style_rgb.shape[-1]),
                             params)
        normalize = self.extractor.normalization
        image = initial_image(levels[0], params, normalize, self.device)
        if params.init == "content":
            image = image + normalize(resize(content_rgb, levels[0].height, levels[0].width))
        rejected = torch.zeros((), dtype=torch.long, device=self.device)
        evaluations = 0
        for number, level in enumerate(levels, start=1):
            release_retained_memory()
            objective = FusionObjective(
                self.extractor,
                normalize(resize(content_rgb, level.height, level.width)),
                normalize(resize(style_rgb, level.style_height, level.style_width)),
                params, result_side=max(levels[-1].height, levels[-1].width))
            found = self._optimize(resize(image, level.height, level.width), objective, params, number, len(levels),
                                   started, callback)
            image, rejected, evaluations = found.point, rejected + found.rejected, evaluations + found.evaluations
        with torch.no_grad():
            final = stack_terms(objective.terms(image, final=True))
        worse = ~(final.sum() <= found.start_loss)  # also true for a NaN
        del objective
        release_retained_memory()
        *terms, worse_value, rejected_value = torch.cat([final, worse.view(1).to(final.dtype),
                                                         rejected.view(1).to(final.dtype)]).tolist()  # one host read
        return SynthesisResult(normalize.inverse(image).clamp(0, 1).cpu(), LossTerms(*terms), evaluations,
                               time.perf_counter() - started, str(self.device), bool(worse_value), int(rejected_value))

    def _optimize(self, start: torch.Tensor, objective: FusionObjective, params: FusionParams,
                  level: int, levels: int, started: float, callback: ProgressCallback | None) -> Minimum:
        """`params.iterations` L-BFGS steps on one level; the best iterate, read back nothing."""
        evaluated = 0

        def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal evaluated
            pixels = point.detach().requires_grad_(True)
            terms = stack_terms(objective.terms(pixels))
            total = terms.sum()
            if total.requires_grad:  # False only when every weight is zero
                torch.autograd.backward(total)
            if callback is not None:
                callback(SynthesisProgress(level, levels, evaluated, params.iterations, pixels.shape[-2],
                                           pixels.shape[-1], terms.detach(), time.perf_counter() - started))
            evaluated += 1
            gradient = pixels.grad if pixels.grad is not None else torch.zeros_like(pixels)
            return total.detach(), gradient

        local = objective.local_loss
        changes = local.schedule.changes(params.iterations + 1) if local is not None else frozenset()
        return minimize(evaluate, start, params.iterations, history=params.lbfgs_history, max_rise=MAX_RISE,
                        objective_changes=changes, change_max_rise=MAX_RISE_AT_REFRESH)


def initial_image(level: Level, params: FusionParams, normalize: Normalization, device: torch.device) -> torch.Tensor:
    """The noise the coarsest level starts from, in network space: small seeded noise around the
    mean pixel (CNNMRF / neural-style; `params.init_noise` is its std in 0..255 units). With
    `params.init` "content" the synthesis adds the content image to it."""
    generator = torch.Generator().manual_seed(params.seed)
    noise = torch.randn(1, 3, level.height, level.width, generator=generator)
    return (noise * params.init_noise / 255.0 / normalize.std.cpu()).to(device)


def stylize(content: ImageInput, style: ImageInput, params: FusionParams | None = None, *,
            weights: str | VGGWeights = "caffe", device: str | torch.device = "auto",
            callback: ProgressCallback | None = None) -> SynthesisResult:
    """One-off stylization; build a `Stylizer` instead to reuse the network for many images."""
    return Stylizer(weights, device)(content, style, params, callback)
