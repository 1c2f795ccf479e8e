"""PostgreSQL: the connection pool and versioned, idempotent migrations.

Migrations are ``NNNN_name.sql`` files shipped as package data. They run at start-up inside one
transaction holding a PostgreSQL advisory lock, so several replicas starting at once apply each
version exactly once; the applied versions are recorded in ``skuflow_schema``.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterable
from importlib import resources
from typing import Any

import asyncpg

from worker.errors import InfrastructureError

log = logging.getLogger(__name__)

#: Arbitrary constant: the advisory lock that serialises migrations across replicas.
_MIGRATION_LOCK = 0x5F_5C_0F_10


class Migration:
    __slots__ = ("checksum", "component", "sql", "version")

    def __init__(self, component: str, version: str, sql: str) -> None:
        self.component = component
        self.version = version
        self.sql = sql
        self.checksum = hashlib.sha256(sql.encode()).hexdigest()


def package_migrations(package: str, component: str) -> list[Migration]:
    """The ``migrations/*.sql`` files of ``package``, in version order (none: no folder)."""
    folder = resources.files(package) / "migrations"
    if not folder.is_dir():
        return []
    found = [
        Migration(component, entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.version)


async def migrate(pool: asyncpg.Pool, migrations: Iterable[Migration]) -> list[str]:
    """Apply the migrations not applied yet; return the ones applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS skuflow_schema (
                   component TEXT NOT NULL, version TEXT NOT NULL, checksum TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        rows = await conn.fetch("SELECT component, version, checksum FROM skuflow_schema")
        done = {(r["component"], r["version"]): r["checksum"] for r in rows}
        for migration in migrations:
            known = done.get((migration.component, migration.version))
            if known is not None:
                if known != migration.checksum:
                    raise InfrastructureError(
                        f"migration {migration.component}/{migration.version} changed after it "
                        "was applied; add a new migration instead of editing an applied one"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO skuflow_schema (component, version, checksum) VALUES ($1, $2, $3)",
                migration.component,
                migration.version,
                migration.checksum,
            )
            applied_now.append(f"{migration.component}/{migration.version}")
    for name in applied_now:
        log.info("migration applied", extra={"migration": name})
    return applied_now


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connection errors never carry the URL (it may hold a password)."""
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn=url, min_size=min_size, max_size=max_size, command_timeout=30
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot reach PostgreSQL: {type(exc).__name__}") from None
    return pool


async def ping(pool: asyncpg.Pool) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            value: Any = await conn.fetchval("SELECT 1", timeout=2)
            return bool(value == 1)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


def advisory_lock_id(namespace: str, name: str) -> int:
    """A stable signed 64-bit advisory-lock id for ``namespace:name`` (PostgreSQL's bigint)."""
    unsigned = zlib.crc32(f"skuflow:{namespace}".encode()) << 32 | zlib.crc32(name.encode())
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned
