"""Our L-BFGS: torch's iterates on a smooth problem, no host reads in its loop, rejected steps retried
shorter, the best iterate returned, a function that changes during the run (refreshed matches)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylecore.lbfgs import minimize


def smooth_problem(seed: int = 0) -> tuple[torch.Tensor, object]:
    """A smooth, strictly convex function of 40 variables (softplus regression with a convex penalty)."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(60, 40, generator=generator) / math.sqrt(40)
    offsets = torch.randn(60, generator=generator)

    def function(x: torch.Tensor) -> torch.Tensor:
        return F.softplus(matrix @ x - offsets).sum() + 0.05 * x.square().sum() + 0.1 * torch.cosh(x).sum()

    return 3 * torch.randn(40, generator=generator), function


def evaluator(function, points: list[torch.Tensor]):
    """An `Evaluate` of `function` that records every point it is asked about."""

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points.append(x.detach().clone())
        pixels = x.detach().requires_grad_(True)
        loss = function(pixels)
        loss.backward()
        return loss.detach(), pixels.grad

    return evaluate


def rising_evaluator(function, points: list[torch.Tensor], reported: list[float], rise):
    """`evaluator`, except that where `rise(len(points))` is a number the loss is reported as that
    number times the previously reported loss (the gradient stays the true one); `reported` records
    every loss it reports."""
    plain = evaluator(function, points)

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, gradient = plain(x)
        factor = rise(len(points))
        loss = factor * reported[-1] * torch.ones_like(loss) if factor is not None else loss
        reported.append(float(loss))
        return loss, gradient

    return evaluate


@pytest.mark.parametrize("history", [5, 25])
def test_iterates_are_torchs_on_a_smooth_problem(float64, history):
    """torch.optim.LBFGS with max_iter=N takes N steps and evaluates the first N points; ours
    evaluates all N + 1. History 5 over 30 steps exercises the history's wrap-around."""
    start, function = smooth_problem()
    steps = 30
    reference, ours = [], []
    parameter = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([parameter], lr=1.0, max_iter=steps, max_eval=10 * steps, history_size=history,
                                  tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        reference.append(parameter.detach().clone())
        loss = function(parameter)
        loss.backward()
        return loss

    optimizer.step(closure)
    reference.append(parameter.detach().clone())
    found = minimize(evaluator(function, ours), start, steps, history=history)

    assert len(reference) == len(ours) == steps + 1 == found.evaluations
    assert int(found.rejected) == 0
    for number, (theirs, mine) in enumerate(zip(reference, ours, strict=True)):
        assert torch.allclose(mine, theirs, rtol=0, atol=1e-6), f"iterate {number} differs"
    assert torch.equal(ours[9], reference[9]), "the first steps are the same arithmetic, bit for bit"
    losses = [float(function(point)) for point in ours]
    assert float(found.loss) == min(losses) and float(found.start_loss) == losses[0]


def test_the_loop_never_reads_a_device_value():
    """On the meta device every host read (`.item()`, `float()`, `if tensor:`) raises: a run that
    completes there has no host sync in its loop, whatever device it later runs on."""

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.square().sum(), 2 * x

    found = minimize(evaluate, torch.empty(3, 8, device="meta"), 12, history=4)
    assert found.point.shape == (3, 8) and found.point.device.type == "meta"
    with pytest.raises(RuntimeError, match="meta"):
        bool(found.loss > 0)


def test_a_step_that_blows_up_is_rejected_and_retried_shorter(float64):
    """The third trial's loss is made infinite (as a NaN/overflow in a real objective would be):
    the iterate stays, the next trial lies on the same ray at most half as far, and the run ends
    on a finite, lower loss."""
    start, function = smooth_problem(1)
    points: list[torch.Tensor] = []
    plain = evaluator(function, points)

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, gradient = plain(x)
        return (torch.tensor(math.inf) if len(points) == 4 else loss), gradient

    found = minimize(evaluate, start, 8)
    assert int(found.rejected) == 1
    base, blown, retried = points[2], points[3], points[4]
    ratio = (retried - base).norm() / (blown - base).norm()
    assert 0.01 - 1e-9 <= ratio <= 0.5 + 1e-9
    assert torch.allclose((retried - base) / (retried - base).norm(), (blown - base) / (blown - base).norm())
    assert math.isfinite(float(found.loss)) and float(found.loss) < float(found.start_loss)


def test_a_rise_beyond_the_factor_is_rejected_and_the_best_iterate_returned(float64):
    """An ill-conditioned quadratic whose first steepest-descent step (0.2 x the gradient) overshoots
    the steep direction: the loss goes from 0.52 to 125. The step is rejected; the next trial starts
    again from the start, with the curvature the overshoot measured, and lands below it; the result
    is the best point seen."""
    curvatures = torch.tensor([1.0, 400.0])

    def function(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (curvatures * x.square()).sum()

    points: list[torch.Tensor] = []
    start = torch.tensor([1.0, 0.01])
    found = minimize(evaluator(function, points), start, 6, max_rise=2.0)
    losses = [float(function(point)) for point in points]
    assert losses[1] > 2 * losses[0], "the case must overshoot"
    assert int(found.rejected) == 1
    assert losses[2] < losses[0], "the retry, made from the start with the overshoot's curvature, descends"
    assert float(found.loss) == min(losses) < losses[0]


def test_the_best_iterate_is_returned_not_the_last(float64):
    """The last trial's loss is reported 1.5x the one before (a rise within the factor, so it is
    accepted): the result is the point before it."""
    start, function = smooth_problem(2)
    points: list[torch.Tensor] = []
    reported: list[float] = []
    found = minimize(rising_evaluator(function, points, reported, lambda seen: 1.5 if seen == 7 else None), start, 6)
    assert int(found.rejected) == 0 and reported[-1] > reported[-2] == min(reported)
    assert torch.equal(found.point, points[-2]) and float(found.loss) == reported[-2]


def test_every_step_above_the_start_returns_the_best_step_not_the_start(float64):
    """Each trial is reported 10% above the one before (rises within the factor): the run returns
    its best step, the first, above its start; the caller sees it in the losses and flags it."""
    start, function = smooth_problem(3)
    points: list[torch.Tensor] = []
    reported: list[float] = []
    found = minimize(rising_evaluator(function, points, reported, lambda seen: 1.1 if seen > 1 else None), start, 4)
    assert int(found.rejected) == 0
    assert torch.equal(found.point, points[1]) and float(found.loss) == reported[1] > float(found.start_loss)


@pytest.mark.parametrize("told", [False, True])
def test_a_function_that_changes_mid_run_is_compared_with_itself_only(float64, told):
    """From trial 3 on the loss gains a constant of twice trial 2's loss (as a refresh of the matches
    can raise the local term ~3x): told of the change, the run accepts the step and picks its best
    among the steps on the new function; not told, it rejects steps for a rise they did not cause
    and returns a point from before the change, compared across the two functions."""
    start, function = smooth_problem(4)
    points: list[torch.Tensor] = []
    plain = evaluator(function, points)
    offset = 0.0

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal offset
        loss, gradient = plain(x)
        if len(points) == 4:
            offset = 2 * float(function(points[2]))
        return loss + offset, gradient

    found = minimize(evaluate, start, 8, objective_changes={3} if told else ())
    on_new_function = [float(function(point)) + offset for point in points[3:]]
    if told:
        assert int(found.rejected) == 0
        assert float(found.loss) == pytest.approx(min(on_new_function))
        assert any(torch.equal(found.point, point) for point in points[3:])
    else:
        assert int(found.rejected) >= 1
        assert any(torch.equal(found.point, point) for point in points[1:3])
