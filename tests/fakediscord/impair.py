"""Seeded network impairment of one speaker's packet stream: loss, reorder, duplication, jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Impairment", "ImpairedLink"]


@dataclass(frozen=True, slots=True)
class Impairment:
    """Probabilities per packet, and the jitter bound in seconds.

    `reorder` delays a packet by 30-60 ms so one or more later packets overtake it.
    """

    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    jitter: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        """True when anything is impaired."""
        return bool(self.loss or self.reorder or self.duplicate or self.jitter)


class ImpairedLink:
    """Decides, deterministically from the seed, what happens to each packet."""

    __slots__ = ("impairment", "_rng")

    def __init__(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._rng = random.Random(impairment.seed)

    def delays(self) -> list[float]:
        """Send delays for the next packet: [] dropped, [d] once, [d1, d2] duplicated."""
        imp, rng = self.impairment, self._rng
        if not imp.active:
            return [0.0]
        if rng.random() < imp.loss:
            return []
        delay = rng.uniform(0.0, imp.jitter) if imp.jitter else 0.0
        if rng.random() < imp.reorder:
            delay += rng.uniform(0.03, 0.06)
        out = [delay]
        if rng.random() < imp.duplicate:
            out.append(delay + rng.uniform(0.0, 0.04))
        return out
