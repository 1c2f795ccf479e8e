"""A token bucket kept in PostgreSQL, so every replica draws from one usage plan.

Amazon meters confirmShipment per seller account (2/s, burst 10), not per process: two urgent
replicas that each pace themselves at 2/s would make 4/s and learn the plan from 429s. This
bucket has the shape and the waiting discipline of
:class:`~handlers.connectors.ratelimit.TokenBucket` (take the token at once, even into debt,
then sleep until the debt is repaid at ``rate``), but its level lives in one row, brought up
to date and drawn from by one atomic statement on the database's clock. Reservations are
granted in the order the statements commit, across replicas, with one round trip per call and
no polling. A waiter that is cancelled forfeits its token (the plan is never exceeded; the
loss is one token).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import asyncpg

__all__ = ["SharedTokenBucket", "bucket_name"]

_DRAW = """
INSERT INTO skuflow_rate_buckets AS b (name, tokens, stamp)
VALUES ($1, $3::float8 - 1, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET
    tokens = least($3::float8,
                   b.tokens + extract(epoch FROM clock_timestamp() - b.stamp) * $2::float8) - 1,
    stamp = clock_timestamp()
RETURNING tokens
"""


#: The row's level brought up to now ($2 rate, $3 burst).
_LEVEL = (
    "least($3::float8, b.tokens + extract(epoch FROM clock_timestamp() - b.stamp) * $2::float8)"
)
_REFUND = f"""
UPDATE skuflow_rate_buckets AS b SET tokens = least($3::float8, {_LEVEL} + 1),
    stamp = clock_timestamp()
WHERE name = $1
"""
_DRAIN = f"""
UPDATE skuflow_rate_buckets AS b SET tokens = least(0, {_LEVEL}), stamp = clock_timestamp()
WHERE name = $1
"""


def bucket_name(operation: str, *identity: str) -> str:
    """``operation`` plus a hash of who is metered (never the credentials themselves)."""
    digest = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]
    return f"spapi:{operation}:{digest}"


class SharedTokenBucket:
    """``await bucket.acquire()`` before each call; returns the seconds it waited."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        name: str,
        rate: float,
        burst: int,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self._pool = pool
        self.name = name
        self.rate = float(rate)
        self.burst = int(burst)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"SharedTokenBucket({self.name!r}, rate={self.rate:g}, burst={self.burst})"

    async def acquire(self) -> float:
        wait = await self.reserve()
        if wait > 0.0:
            await self._sleep(wait)
        return wait

    # -- a token source for worker.pacing.DeadlinePacer (one reservation per replica) ----------
    async def reserve(self) -> float:
        """Draw a token now, into debt if need be; the seconds until it is usable."""
        level = float(await self._pool.fetchval(_DRAW, self.name, self.rate, self.burst))
        return 0.0 if level >= 0.0 else -level / self.rate

    async def refund(self) -> None:
        """A token drawn but not used goes back to every replica (never above ``burst``)."""
        await self._pool.execute(_REFUND, self.name, self.rate, self.burst)

    async def drain(self) -> None:
        """Amazon answered 429: the plan is spent for every replica, whatever the row says."""
        await self._pool.execute(_DRAIN, self.name, self.rate, self.burst)
