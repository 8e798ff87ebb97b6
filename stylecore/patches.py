"""Feature-map patches of the local loss: extraction, the per-level style bank, the matched target.

Patches are rows of a (P, k*k*C) matrix in offset-major order: element (dy*k + dx)*C + c
is channel c at offset (dy, dx) from the patch's top left corner. A patch grid of stride
s over an (H, W) map has ((H - k) // s + 1) x ((W - k) // s + 1) patches, in row-major
order.
"""

from __future__ import annotations

import torch
from torch import nn

from stylecore.matching import nearest_patches, normalize_patches


def extract_patches(features: torch.Tensor, size: int, stride: int = 1) -> torch.Tensor:
    """All size x size patches of a (1, C, H, W) map as rows of a contiguous (P, size*size*C) matrix.

    Offset-major rows copy runs of C contiguous values out of a channels_last map (VGG's
    activations): several times faster than `unfold` and a transpose on a CPU
    (BENCHMARKS.md, direction 8).
    """
    pixels = features[0].permute(1, 2, 0)  # (H, W, C), a view of a channels_last map
    windows = pixels.unfold(0, size, stride).unfold(1, size, stride)  # (rows, columns, C, dy, dx)
    return windows.permute(0, 1, 3, 4, 2).reshape(-1, size * size * features.shape[1])


def patch_grid(height: int, width: int, size: int, stride: int = 1) -> tuple[int, int]:
    """(rows, columns) of the size x size patch grid of stride `stride` over an (H, W) map."""
    return (height - size) // stride + 1, (width - size) // stride + 1


def memory_format_of(features: torch.Tensor) -> torch.memory_format:
    """channels_last for a (N, C, H, W) tensor laid out that way (VGG's activations), else contiguous."""
    if not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class PatchBank(nn.Module):
    """The style patches of one pyramid level, in the two layouts the local loss reads.

    `normalized` (Ps, k*k*C): unit rows, for the nearest-patch search (Eq. 5).
    `by_offset` (k*k, Ps, C): patch s's values at offset (dy, dx) in row dy*k + dx, so
    that building the matched target is k*k row gathers instead of a gather of whole
    patches and a fold. `energy` (k*k, Ps): each offset's squared norm over C. All three
    are buffers: `.to()` and `state_dict()` carry them.
    """

    normalized: torch.Tensor
    by_offset: torch.Tensor
    energy: torch.Tensor

    def __init__(self, patches: torch.Tensor, size: int, stride: int = 1,
                 grid: tuple[int, int] | None = None) -> None:
        """`patches`: (Ps, size*size*C) rows, as `extract_patches` returns them; `grid`: the
        (rows, columns) patch grid they come from, if known (the coherent search needs it)."""
        super().__init__()
        with torch.no_grad():
            count, width = patches.shape
            self.size, self.stride, self.grid = size, stride, grid
            by_offset = patches.reshape(count, size * size, width // (size * size)).transpose(0, 1).contiguous()
            self.register_buffer("normalized", normalize_patches(patches.contiguous()))
            self.register_buffer("by_offset", by_offset)
            self.register_buffer("energy", by_offset.square().sum(dim=2))

    @classmethod
    def from_features(cls, style_features: torch.Tensor, size: int, stride: int = 1) -> PatchBank:
        """The bank of every patch of (1, C, Hs, Ws) style features."""
        height, width = style_features.shape[-2:]
        return cls(extract_patches(style_features.detach(), size, stride), size, stride,
                   patch_grid(height, width, size, stride))

    def __len__(self) -> int:
        return int(self.normalized.shape[0])

    @property
    def patch_length(self) -> int:
        """size * size * C, the dimension the search compares in."""
        return int(self.normalized.shape[1])


class MRFTarget(nn.Module):
    """The matched style patches of Eq. (4), averaged onto the synthesis feature map.

    `mean` is T, the average of the matched patches covering each position, `covered`
    marks positions inside at least one patch, and `residual` the part of the loss that
    does not depend on the synthesis. Precomputing these (buffers, like the bank's) turns
    the loss into 0.5 * ||F - T||^2 + residual, whose gradient F - T is exactly CNNMRF's
    (`stylecore.losses.mrf_loss`).
    """

    mean: torch.Tensor
    covered: torch.Tensor
    residual: torch.Tensor

    def __init__(self, bank: PatchBank, index: torch.Tensor, height: int, width: int,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        """`index` (P,): the bank row matched to each patch of an (H, W) synthesis map.

        `memory_format`: that of the features the loss will see, so it runs without copies.
        """
        super().__init__()
        size, stride = bank.size, bank.stride
        rows, columns = patch_grid(height, width, size, stride)
        if index.numel() != rows * columns:
            raise ValueError(f"{index.numel()} matches for a {rows}x{columns} patch grid")
        channels = bank.by_offset.shape[2]
        with torch.no_grad():
            total = bank.by_offset.new_zeros(height, width, channels)
            energy = bank.energy.new_zeros(height, width, 1)
            count = bank.energy.new_zeros(height, width, 1)
            for offset in range(size * size):
                dy, dx = divmod(offset, size)
                window = (slice(dy, dy + stride * (rows - 1) + 1, stride),
                          slice(dx, dx + stride * (columns - 1) + 1, stride))
                total[window] += bank.by_offset[offset].index_select(0, index).view(rows, columns, channels)
                energy[window] += bank.energy[offset].index_select(0, index).view(rows, columns, 1)
                count[window] += 1
            safe_count = count.clamp_min(1)
            mean = total / safe_count
            self.register_buffer("residual", 0.5 * ((energy / safe_count).sum() - mean.square().sum()).clamp_min(0))
            self.register_buffer("covered", (count > 0).permute(2, 0, 1).unsqueeze(0))
            self.register_buffer("mean", mean.permute(2, 0, 1).unsqueeze(0).contiguous(memory_format=memory_format))

    @classmethod
    def nearest(cls, bank: PatchBank, features: torch.Tensor, budget_bytes: int = 256 * 2**20) -> MRFTarget:
        """The target of (1, C, H, W) `features` matched exactly now: each patch's nearest in `bank` (Eq. 5)."""
        index = nearest_patches(extract_patches(features.detach(), bank.size, bank.stride), bank.normalized,
                                budget_bytes)
        return cls(bank, index, features.shape[-2], features.shape[-1], memory_format_of(features))
