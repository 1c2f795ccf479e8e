"""The one root of skuflow's own errors. External errors are translated at the edges."""

from __future__ import annotations


class SkuflowError(Exception):
    """Root of every error raised by skuflow's own code."""


class InfrastructureError(SkuflowError):
    """A dependency (PostgreSQL, Kafka) failed in a way that retrying may fix."""
