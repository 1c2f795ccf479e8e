"""The one root of skuflow's own errors. External errors are translated at the edges."""

from __future__ import annotations


class SkuflowError(Exception):
    """Root of every error raised by skuflow's own code."""


class InfrastructureError(SkuflowError):
    """A dependency (PostgreSQL, Kafka) failed in a way that retrying may fix."""


def is_infrastructure(exc: BaseException) -> bool:
    """A failure of a dependency (network, PostgreSQL going away), not of the event itself.

    The engine waits these out without counting them against the event's attempts: an outage
    must not turn valid events into exceptions.
    """
    if isinstance(exc, InfrastructureError | OSError):  # (TimeoutError, ConnectionError, ...)
        return True
    import asyncpg

    return isinstance(
        exc,
        asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.OperatorInterventionError  # shutting down, starting up (57P0x)
        | asyncpg.InsufficientResourcesError  # too many connections, disk full
        | asyncpg.exceptions.ConnectionDoesNotExistError,
    )
