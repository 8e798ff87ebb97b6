"""The loss functions against deliberately naive reference implementations (values and gradients)."""

from __future__ import annotations

import itertools

import pytest
import torch

from stylecore.losses import content_loss, gram_loss, gram_matrix, mrf_loss, total_variation
from stylecore.matching import nearest_patches, normalize_patches
from stylecore.patches import MRFTarget, PatchBank

pytestmark = pytest.mark.usefixtures("float64")


def naive_gram(features: torch.Tensor) -> torch.Tensor:
    _, c, h, w = features.shape
    gram = torch.zeros(c, c)
    for i, j in itertools.product(range(c), range(c)):
        gram[i, j] = sum(features[0, i, y, x] * features[0, j, y, x] for y in range(h) for x in range(w))
    return gram / (c * h * w)


def naive_patches(features: torch.Tensor, size: int, stride: int) -> list[tuple[int, int, torch.Tensor]]:
    """(top, left, flattened size*size*C patch in (dy, dx, c) order) for every patch position."""
    _, _, h, w = features.shape
    return [(y, x, features[0, :, y:y + size, x:x + size].permute(1, 2, 0).reshape(-1))
            for y in range(0, h - size + 1, stride) for x in range(0, w - size + 1, stride)]


def naive_nearest(queries: torch.Tensor, bank: torch.Tensor) -> list[int]:
    """Arg max over the bank of q.s / (|q| |s|), one query at a time."""
    best = []
    for query in queries:
        scores = [float(query @ patch) / (float(query.norm()) * float(patch.norm())) for patch in bank]
        best.append(max(range(len(scores)), key=scores.__getitem__))
    return best


MEMORY_FORMATS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
def test_gram_matrix_matches_naive_sum(memory_format):
    features = torch.randn(1, 4, 5, 6).contiguous(memory_format=memory_format)
    assert torch.allclose(gram_matrix(features)[0], naive_gram(features))


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
def test_gram_matrix_gradient_passes_gradcheck(memory_format):
    """Checked against finite differences for any upstream gradient, symmetric or not."""
    features = torch.randn(2, 3, 4, 5, dtype=torch.double).contiguous(memory_format=memory_format)
    assert torch.autograd.gradcheck(gram_matrix, (features.requires_grad_(),))


def test_gram_matrix_gradient_keeps_channels_last_layout():
    features = torch.randn(1, 8, 6, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    gram_matrix(features).sum().backward()
    assert features.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
def test_gram_loss_value_and_gradient_match_naive(memory_format):
    features = torch.randn(1, 3, 4, 5).contiguous(memory_format=memory_format).requires_grad_()
    target = naive_gram(torch.randn(1, 3, 4, 5))
    loss = gram_loss(features, target)
    naive = ((naive_gram(features) - target) ** 2).sum() / 9
    assert torch.allclose(loss, naive)
    (grad,) = torch.autograd.grad(loss, features)
    (naive_grad,) = torch.autograd.grad(naive, features)
    assert torch.allclose(grad, naive_grad)


def test_content_loss_is_mean_squared_error():
    features, target = torch.randn(1, 3, 4, 4, requires_grad=True), torch.randn(1, 3, 4, 4)
    loss = content_loss(features, target)
    assert torch.allclose(loss, ((features - target) ** 2).sum() / features.numel())
    (grad,) = torch.autograd.grad(loss, features)
    assert torch.allclose(grad, 2 * (features - target) / features.numel())


def test_total_variation_matches_neural_style_gradient():
    image = torch.randn(1, 3, 5, 6, requires_grad=True)
    (grad,) = torch.autograd.grad(total_variation(image), image)
    x = image.detach()
    expected = torch.zeros_like(x)
    x_diff = x[..., :-1, :-1] - x[..., :-1, 1:]
    y_diff = x[..., :-1, :-1] - x[..., 1:, :-1]
    expected[..., :-1, :-1] += x_diff + y_diff
    expected[..., :-1, 1:] -= x_diff
    expected[..., 1:, :-1] -= y_diff
    assert torch.allclose(grad, expected)


@pytest.mark.parametrize("budget_bytes", [8, 200, 2**20])
def test_nearest_patches_is_the_exact_normalised_cross_correlation_argmax(budget_bytes):
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(23, 18, generator=generator)
    bank = torch.randn(31, 18, generator=generator) * torch.rand(31, 1, generator=generator) * 5
    found = nearest_patches(queries, normalize_patches(bank), budget_bytes)
    assert found.tolist() == naive_nearest(queries, bank)


def test_nearest_patches_ignores_patch_norms():
    """A large but badly aligned patch must lose to a small well-aligned one (NCC, not dot product)."""
    query = torch.tensor([[1.0, 0.0]])
    bank = torch.tensor([[10.0, 10.0], [0.1, 0.0]])
    assert nearest_patches(query, normalize_patches(bank)).tolist() == [1]


def naive_mrf(features: torch.Tensor, style: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Sum over synthesis patches of the squared distance to the NCC-nearest style patch,
    each element weighted by 1 / (number of patches covering its position), halved."""
    _, c, h, w = features.shape
    count = torch.zeros(h, w)
    for y, x, _ in naive_patches(features, size, stride):
        count[y:y + size, x:x + size] += 1
    bank = torch.stack([patch for _, _, patch in naive_patches(style, size, stride)])
    synthesis = naive_patches(features, size, stride)
    matches = naive_nearest(torch.stack([p.detach() for _, _, p in synthesis]), bank)
    total = torch.zeros(())
    for (y, x, patch), match in zip(synthesis, matches, strict=True):
        weight = (1 / count[y:y + size, x:x + size]).unsqueeze(2).expand(size, size, c).reshape(-1)
        total = total + (weight * (patch - bank[match]) ** 2).sum()
    return 0.5 * total


def cnnmrf_gradient(features: torch.Tensor, style: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """CNNMRF's update: at each position, the average over covering patches of (current - matched)."""
    _, c, h, w = features.shape
    total, count = torch.zeros(c, h, w), torch.zeros(h, w)
    bank = torch.stack([patch for _, _, patch in naive_patches(style, size, stride)])
    synthesis = naive_patches(features, size, stride)
    matches = naive_nearest(torch.stack([p for _, _, p in synthesis]), bank)
    for (y, x, patch), match in zip(synthesis, matches, strict=True):
        total[:, y:y + size, x:x + size] += (patch - bank[match]).reshape(size, size, c).permute(2, 0, 1)
        count[y:y + size, x:x + size] += 1
    return (total / count.clamp_min(1)).unsqueeze(0)


@pytest.mark.parametrize(("stride", "memory_format"), [(1, torch.contiguous_format), (2, torch.contiguous_format),
                                                        (1, torch.channels_last)])
def test_mrf_loss_value_and_gradient_match_naive(stride, memory_format):
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(1, 3, 7, 6, generator=generator).contiguous(memory_format=memory_format).requires_grad_()
    style = torch.randn(1, 3, 6, 8, generator=generator)
    loss = mrf_loss(features, MRFTarget.nearest(PatchBank.from_features(style, 3, stride), features))
    naive = naive_mrf(features, style, 3, stride)
    assert torch.allclose(loss, naive)
    (grad,) = torch.autograd.grad(loss, features)
    (naive_grad,) = torch.autograd.grad(naive, features)
    assert torch.allclose(grad, naive_grad)
    assert torch.allclose(grad, cnnmrf_gradient(features.detach(), style, 3, stride))


def test_mrf_loss_is_zero_when_synthesis_is_the_style():
    style = torch.randn(1, 4, 6, 6)
    target = MRFTarget.nearest(PatchBank.from_features(style, 3), style)
    assert float(mrf_loss(style.clone(), target)) == pytest.approx(0.0, abs=1e-9)
