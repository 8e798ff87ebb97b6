"""Multi-resolution L-BFGS synthesis: the paper's optimisation of Eq. (1) over pixels."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from PIL import Image

from stylecore.allocator import release_retained_memory, retain_freed_memory
from stylecore.imageio import ImageError
from stylecore.images import fit_long_side, image_to_tensor, resize, tensor_to_image
from stylecore.objective import FusionObjective, to_loss_terms
from stylecore.params import FusionParams
from stylecore.progress import LossTerms, ProgressCallback, SynthesisProgress
from stylecore.vgg import VGGFeatures, downsampling_of
from stylecore.weights import VGGWeights, load_weights

ImageInput = Image.Image | torch.Tensor


class ImageTooSmallError(ValueError):
    """An image is too small for the local loss's patches at the coarsest pyramid level."""

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

    image: torch.Tensor  # (1, 3, H, W), RGB 0..1, on the CPU
    losses: LossTerms  # weighted terms of the returned image, matched as the last level's end matched
    evaluations: int  # loss evaluations over all levels
    seconds: float
    device: str

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
    image and the level that would be too small.
    """
    height, width = content_size if params.size is None else fit_long_side(*content_size, params.size)
    style_long = params.style_size or max(height, width)
    style_height, style_width = fit_long_side(*style_size, style_long)
    smallest = minimum_side(params)
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
        """Stylize `content` with `style`; returns an image of the content's aspect ratio."""
        params = params or FusionParams()
        started = time.perf_counter()
        content_rgb = as_image_tensor(content).to(self.device)
        style_rgb = as_image_tensor(style).to(self.device)
        levels = plan_levels((content_rgb.shape[-2], content_rgb.shape[-1]), (style_rgb.shape[-2], style_rgb.shape[-1]),
                             params)
        normalize = self.extractor.normalization
        generator = torch.Generator().manual_seed(params.seed)
        first = levels[0]
        image = (torch.randn(1, 3, first.height, first.width, generator=generator) * params.init_noise
                 / 255.0 / normalize.std.cpu()).to(self.device)
        evaluations = 0
        for number, level in enumerate(levels, start=1):
            release_retained_memory()
            image = resize(image, level.height, level.width)
            objective = FusionObjective(
                self.extractor,
                normalize(resize(content_rgb, level.height, level.width)),
                normalize(resize(style_rgb, level.style_height, level.style_width)),
                params)
            image, spent = self._optimize(image, objective, params, number, len(levels), started, callback)
            evaluations += spent
        with torch.no_grad():
            final = to_loss_terms(objective.terms(image, final=True))
        del objective
        release_retained_memory()
        return SynthesisResult(normalize.inverse(image).clamp(0, 1).cpu(), final, evaluations,
                               time.perf_counter() - started, str(self.device))

    def _optimize(self, start: torch.Tensor, objective: FusionObjective, params: FusionParams,
                  level: int, levels: int, started: float,
                  callback: ProgressCallback | None) -> tuple[torch.Tensor, int]:
        """L-BFGS on one level; returns the image and the number of loss evaluations."""
        image = start.detach().clone().requires_grad_(True)
        # tolerance_change=0: the first step (1 / |gradient|_1 long) can leave a float32 loss
        # of ~1e7 bit-identical, which the default 1e-9 takes for convergence and ends the
        # level; a level runs its iterations unless the gradient vanishes or is not descending.
        optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=params.iterations,
                                      max_eval=params.iterations, history_size=params.lbfgs_history,
                                      tolerance_change=0.0)
        evaluations = 0

        def closure() -> torch.Tensor:
            nonlocal evaluations
            optimizer.zero_grad(set_to_none=True)
            terms = objective.terms(image)
            total = torch.stack(list(terms.values())).sum()
            torch.autograd.backward(total)
            evaluations += 1
            if callback is not None:
                callback(SynthesisProgress(level, levels, evaluations, params.iterations, image.shape[-2],
                                           image.shape[-1], to_loss_terms(terms), time.perf_counter() - started))
            return total

        optimizer.step(closure)  # type: ignore[no-untyped-call]  # torch's LBFGS.step is unannotated
        return image.detach(), evaluations


def stylize(content: ImageInput, style: ImageInput, params: FusionParams | None = None, *,
            weights: str | VGGWeights = "caffe", device: str | torch.device = "auto",
            callback: ProgressCallback | None = None) -> SynthesisResult:
    """One-off stylization; build a `Stylizer` instead to reuse the network for many images."""
    return Stylizer(weights, device)(content, style, params, callback)
