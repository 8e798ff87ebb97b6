"""Progress reports from a running synthesis, for progress bars and results tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LossTerms:
    """The weighted terms of Eq. (1) (each already multiplied by its alpha) and their sum."""

    global_: float
    local: float
    content: float
    tv: float = 0.0

    @property
    def total(self) -> float:
        return self.global_ + self.local + self.content + self.tv


@dataclass(frozen=True)
class SynthesisProgress:
    """One loss evaluation of the optimisation: where it is and what the loss was."""

    level: int  # 1-based pyramid level, coarsest first
    levels: int
    iteration: int  # 1-based loss evaluation within this level
    iterations: int  # evaluation budget of each level
    height: int  # synthesis size at this level
    width: int
    losses: LossTerms
    elapsed: float  # seconds since the synthesis started

    @property
    def fraction(self) -> float:
        """Share of the whole evaluation budget spent so far, 0..1."""
        return ((self.level - 1) * self.iterations + self.iteration) / (self.levels * self.iterations)


ProgressCallback = Callable[[SynthesisProgress], None]
