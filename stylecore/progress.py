"""Progress reports from a running synthesis, for progress bars and results tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


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

    @classmethod
    def from_tensor(cls, terms: torch.Tensor) -> LossTerms:
        """From a (4,) tensor of the global, local, content and TV terms (one host read)."""
        global_, local, content, tv = terms.tolist()
        return cls(global_, local, content, tv)


@dataclass(frozen=True)
class SynthesisProgress:
    """One loss evaluation of the optimisation: where it is and what the loss was.

    Built without reading anything back from the device: `terms` stays where the synthesis
    runs, and only reading `losses` (once, then cached) waits for it. A callback that does not
    read the losses costs a GPU synthesis no sync.
    """

    level: int  # 1-based pyramid level, coarsest first
    levels: int
    iteration: int  # L-BFGS steps taken in this level: 0 at the evaluation of its start, then 1..iterations
    iterations: int  # steps of each level (a level evaluates iterations + 1 points)
    height: int  # synthesis size at this level
    width: int
    terms: torch.Tensor  # (4,) weighted global, local, content and TV terms, on the synthesis's device
    elapsed: float  # seconds since the synthesis started

    @cached_property
    def losses(self) -> LossTerms:
        """The weighted terms as floats (reads them back from the device)."""
        return LossTerms.from_tensor(self.terms)

    @property
    def fraction(self) -> float:
        """Share of the whole budget of steps taken so far, 0..1."""
        return ((self.level - 1) * self.iterations + self.iteration) / (self.levels * self.iterations)


ProgressCallback = Callable[[SynthesisProgress], None]
