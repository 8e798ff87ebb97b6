"""Patch extraction, the per-level style bank's layouts, and the matched target against naive loops."""

from __future__ import annotations

import pytest
import torch

from stylecore.losses import mrf_loss
from stylecore.patches import MRFTarget, PatchBank, extract_patches, memory_format_of
from tests.stylecore.test_losses import naive_patches

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("stride", [1, 2])
def test_extract_patches_matches_slicing(stride):
    features = torch.randn(1, 2, 6, 7)
    rows = extract_patches(features, 3, stride)
    naive = naive_patches(features, 3, stride)
    assert rows.shape == (len(naive), 2 * 9)
    for row, (_, _, patch) in zip(rows, naive, strict=True):
        assert torch.equal(row, patch)


def test_patch_bank_layouts_hold_the_same_patches():
    style = torch.randn(1, 3, 5, 6)
    rows = extract_patches(style, 3)
    bank = PatchBank(rows, 3)
    assert len(bank) == rows.shape[0] and bank.patch_length == 27
    assert torch.allclose(bank.normalized * rows.norm(dim=1, keepdim=True), rows)
    for patch, row in enumerate(rows):
        by_offset = row.reshape(9, 3)  # (dy * 3 + dx, C)
        assert torch.equal(bank.by_offset[:, patch], by_offset)
        assert torch.allclose(bank.energy[:, patch], by_offset.square().sum(dim=1))


def naive_target_loss(features: torch.Tensor, matched: list[torch.Tensor], size: int, stride: int) -> torch.Tensor:
    """Half the squared distance of each synthesis patch to its given patch, each element
    weighted by 1 / (number of patches covering its position)."""
    _, c, h, w = features.shape
    positions = naive_patches(features, size, stride)
    count = torch.zeros(h, w)
    for y, x, _ in positions:
        count[y:y + size, x:x + size] += 1
    total = torch.zeros(())
    for (y, x, patch), target in zip(positions, matched, strict=True):
        weight = (1 / count[y:y + size, x:x + size]).unsqueeze(2).expand(size, size, c).reshape(-1)
        total = total + (weight * (patch - target) ** 2).sum()
    return 0.5 * total


@pytest.mark.parametrize(("stride", "memory_format"), [(1, torch.contiguous_format), (2, torch.contiguous_format),
                                                        (1, torch.channels_last), (2, torch.channels_last)])
def test_target_loss_matches_naive_for_any_assignment(stride, memory_format):
    """Value (residual included) and gradient for arbitrary matches, uncovered borders too (stride 2)."""
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(1, 4, 8, 7, generator=generator).contiguous(memory_format=memory_format)
    rows = extract_patches(torch.randn(1, 4, 6, 6, generator=generator), 3, stride)
    bank = PatchBank(rows, 3, stride)
    patches = len(naive_patches(features, 3, stride))
    index = torch.randint(len(bank), (patches,), generator=generator)
    target = MRFTarget(bank, index, 8, 7, memory_format_of(features))
    assert target.mean.is_contiguous(memory_format=memory_format)
    features.requires_grad_()
    loss = mrf_loss(features, target)
    naive = naive_target_loss(features, list(rows[index]), 3, stride)
    assert torch.allclose(loss, naive)
    (grad,) = torch.autograd.grad(loss, features)
    (naive_grad,) = torch.autograd.grad(naive, features)
    assert torch.allclose(grad, naive_grad)


def test_target_refuses_a_wrong_number_of_matches():
    bank = PatchBank(torch.randn(4, 9), 3)
    with pytest.raises(ValueError, match="12 matches for a 2x3 patch grid"):
        MRFTarget(bank, torch.zeros(12, dtype=torch.long), 4, 5)
