"""L-BFGS without host syncs: every decision is a device tensor, so a GPU never waits on Python.

`torch.optim.LBFGS` reads back about 55 device values per iteration at history 25 (each
two-loop coefficient passed as `alpha=`, the loss as a float, its stopping tests). Here the
history lives in preallocated (history, n) tensors, the two-loop recursion uses 0-d device
tensors as coefficients, and each choice (keep a curvature pair, accept a step, remember the
best iterate) is a `torch.where`, or a lerp or multiply-add by a 0/1 weight (which selects
exactly, in one pass), rather than a Python branch. The loop runs a fixed number of steps,
with none of torch's early stops (a tolerance, or a direction that is not a descent one:
such a step is caught by the rejection below), which also makes the time of a synthesis
predictable.

Without rejections the iterates are torch's (no line search, `lr`, the first step scaled by
min(1, 1 / |g|_1), the curvature test y.s > 1e-10). Two additions make it robust:

- A trial whose loss is not finite or exceeds `max_rise` times the current loss is rejected:
  the iterate stays where it was. If the trial's loss and gradient are finite, its curvature
  pair still enters the history (the overshoot measured the curvature that caused it) and the
  next direction is computed afresh from the current point; torch would have moved to the
  overshoot and learnt the same pair there. Otherwise the same direction is retried shorter:
  the minimiser of the quadratic through the two losses and the slope, kept within
  [0.01, 0.5] of the rejected step.
- The best iterate (lowest loss) is what `minimize` returns, not the last one. The start
  does not compete: a run whose every step ended above its start returns its best step (which
  the caller can flag), not the unchanged start.

Where the objective itself changes during the run (the local loss refreshing the matches it
reuses between searches, `objective_changes`), losses before and after are values of two
functions: the best iterate is then chosen again among the steps on the new function, and
until one of them is accepted a step may rise up to `change_max_rise` times the last loss,
since its rise also holds the change of function.

A slot of the history is written at every step (so the host always knows the order of the
slots); a pair that fails the curvature test, or a non-finite trial, writes an empty pair
(rho = 0), which the recursion passes over. Torch skips such a pair instead: the only
difference is that it evicts the oldest pair one step early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch

Evaluate = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""Loss (0-d) and gradient (the point's shape) at a point; both detached."""

# torch.optim.LBFGS's test for a usable curvature pair.
CURVATURE_EPS = 1e-10
# Backtracking keeps a retried step within these fractions of the rejected one.
SHORTEST, LONGEST = 0.01, 0.5


@dataclass(frozen=True)
class Minimum:
    """What `minimize` found; tensors stay on the device (read them once, at the end)."""

    point: torch.Tensor  # the best iterate (lowest loss seen), shaped as the start
    loss: torch.Tensor  # 0-d, its loss
    start_loss: torch.Tensor  # 0-d, the loss of the start
    rejected: torch.Tensor  # 0-d int64, steps rejected for raising the loss too much
    evaluations: int  # steps + 1 (the start is evaluated too)


class History:
    """The last `size` curvature pairs (s, y) of an L-BFGS run, in preallocated device tensors.

    Slot k % size holds the k-th pair written; `rho` is 1 / (y.s) for a usable pair and 0 for
    an empty one. `scale` is H0 = (y.s) / (y.y) of the newest usable pair (1 before any).
    """

    def __init__(self, like: torch.Tensor, size: int) -> None:
        """`like`: a flat (n,) tensor of the dtype and device to keep the history in."""
        self.size = size
        self.steps = like.new_zeros(size, like.numel())  # s_k = x_{k+1} - x_k
        self.changes = like.new_zeros(size, like.numel())  # y_k = g_{k+1} - g_k
        self.rho = like.new_zeros(size)
        self.scale = like.new_ones(())
        self.written = 0  # pairs written so far: a host count, independent of the data

    def add(self, direction: torch.Tensor, length: torch.Tensor, gradient: torch.Tensor,
            previous_gradient: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the pair s = length * direction, y = gradient - previous_gradient into the next slot.

        The pair is empty (rho = 0) unless `keep` (0-d bool), y is finite and y.s > 1e-10; a
        non-finite y is zeroed so that the recursion can pass over it. Returns (usable, y finite),
        0-d bools. Written straight into the slot: no temporary the size of the image.
        """
        slot = self.written % self.size
        step, change = self.steps[slot], self.changes[slot]
        torch.mul(direction, length, out=step)
        torch.sub(gradient, previous_gradient, out=change)
        curvature, squared = change.dot(step), change.dot(change)
        finite = torch.isfinite(squared)  # false for any inf or NaN in y (or an overflowing y.y)
        change.nan_to_num_(0.0, 0.0, 0.0)
        usable = keep & finite & (curvature > CURVATURE_EPS)
        self.rho[slot] = torch.where(usable, 1.0 / curvature, 0.0)
        self.scale = torch.where(usable, curvature / squared, self.scale)
        self.written += 1
        return usable, finite

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """-H g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4), all on the device."""
        slots = [(self.written - 1 - k) % self.size for k in range(min(self.written, self.size))]  # newest first
        q = gradient.neg()
        alphas = []
        for slot in slots:
            alpha = self.steps[slot].dot(q) * self.rho[slot]
            q.addcmul_(self.changes[slot], alpha, value=-1.0)
            alphas.append(alpha)
        r = q.mul_(self.scale)
        for slot, alpha in zip(reversed(slots), reversed(alphas), strict=True):
            beta = self.changes[slot].dot(r) * self.rho[slot]
            r.addcmul_(self.steps[slot], alpha - beta)
        return r


def first_step_length(gradient: torch.Tensor, lr: float) -> torch.Tensor:
    """torch's first step: lr * min(1, 1 / |g|_1), so that a steepest-descent step stays small."""
    length: torch.Tensor = torch.linalg.vector_norm(gradient, ord=1).reciprocal().clamp(max=1.0) * lr
    return length


def shorter_step(length: torch.Tensor, slope: torch.Tensor, loss: torch.Tensor,
                 trial_loss: torch.Tensor) -> torch.Tensor:
    """The step to retry after `length` raised the loss to `trial_loss`: the minimiser of the
    quadratic through loss, slope (g.d < 0) and trial_loss, within [0.01, 0.5] x `length`."""
    curvature = trial_loss - loss - slope * length
    interpolated = -slope * length * length / (2.0 * curvature)
    interpolated = torch.where(torch.isfinite(interpolated) & (curvature > 0), interpolated, 0.1 * length)
    return interpolated.clamp(min=SHORTEST * length, max=LONGEST * length)


def minimize(evaluate: Evaluate, start: torch.Tensor, steps: int, *, history: int = 25, lr: float = 1.0,
             max_rise: float = 2.0, objective_changes: Collection[int] = (),
             change_max_rise: float = 4.0) -> Minimum:
    """`steps` L-BFGS steps from `start`, each evaluated once: `steps` + 1 evaluations, no host sync.

    A trial is accepted unless its loss is not finite or above `max_rise` times the current
    loss (see the module's docstring for what happens then). Returns the best iterate seen.
    `objective_changes`: the trial numbers (1 .. `steps`) at which `evaluate` becomes another
    function (refreshed matches); see the module's docstring. `evaluate` runs with autograd
    on; no tensor here requires grad.
    """
    shape = start.shape
    point = start.detach().reshape(-1).clone()
    loss, gradient = _flat(evaluate(point.view(shape)))
    best, best_loss, start_loss = point.clone(), torch.full_like(loss, math.inf), loss.clone()
    memory = History(point, history)
    direction = gradient.neg()
    length = first_step_length(gradient, lr)
    slope = gradient.dot(direction)
    rejected = torch.zeros((), dtype=torch.long, device=point.device)
    changed = torch.zeros((), dtype=torch.bool, device=point.device)  # a new function, no step accepted on it yet
    changes = frozenset(objective_changes)
    for number in range(1, steps + 1):
        trial = point.addcmul(direction, length)
        trial_loss, trial_gradient = _flat(evaluate(trial.view(shape)))
        if number in changes:
            changed.fill_(True)
        limit = torch.where(changed, change_max_rise, max_rise) * loss
        finite_loss = torch.isfinite(trial_loss)
        if number < steps:
            # A finite trial teaches the history its curvature pair even when rejected (an overshoot
            # measures the curvature that made it overshoot); the next direction then starts from the
            # current point with that knowledge. Otherwise the same direction is retried shorter.
            learned, finite_gradient = memory.add(direction, length, trial_gradient, gradient, finite_loss)
            accept = finite_loss & finite_gradient & (trial_loss <= limit)
        else:  # the last trial only competes for the best iterate
            accept = finite_loss & (trial_loss <= limit)
        rejected += ~accept
        improved = accept & ((trial_loss < best_loss) | changed)
        changed &= ~accept
        best.lerp_(trial, improved.to(best.dtype))  # a weight of 0 or 1 selects exactly
        best_loss = torch.where(improved, trial_loss, best_loss)
        if number == steps:
            break
        retry = shorter_step(length, slope, loss, trial_loss)
        point.addcmul_(direction, length * accept)  # the trial itself (same arithmetic), or no move
        torch.where(accept, trial_gradient, gradient, out=gradient)  # a rejected gradient may not be finite
        loss = torch.where(accept, trial_loss, loss)
        renewed = accept | learned
        direction.lerp_(memory.direction(gradient), renewed.to(direction.dtype))
        slope = torch.where(renewed, gradient.dot(direction), slope)
        length = torch.where(renewed, lr, retry)
    best_loss = torch.where(best_loss == math.inf, start_loss, best_loss)  # no trial accepted: the start
    return Minimum(best.view(shape), best_loss, start_loss, rejected, steps + 1)


def _flat(evaluated: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    loss, gradient = evaluated
    return loss.detach(), gradient.detach().reshape(-1)
