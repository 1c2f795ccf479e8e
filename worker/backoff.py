"""Exponential backoff with full jitter and a cap."""

from __future__ import annotations

import random

import msgspec


class Backoff(msgspec.Struct, frozen=True):
    initial: float = 0.2
    maximum: float = 60.0
    multiplier: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before attempt ``attempt`` (1 = first retry)."""
        exponent = min(max(attempt - 1, 0), 64)
        return float(min(self.maximum, self.initial * self.multiplier**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A jittered delay in [ceiling/2, ceiling]: never zero, never above the cap."""
        ceiling = self.ceiling(attempt)
        draw = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2
