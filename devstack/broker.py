"""What :class:`~devstack.kafka.KafkaBroker` and :class:`~devstack.tansu.TansuBroker` share.

* :func:`kafka_broker_ready` is the readiness probe: a raw Metadata v1 request (no client
  library, no event loop, no warnings).
* :class:`_BrokerProcess` starts, stops and waits for a broker child process.

The child process never outlives the Python process that started it: it gets
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (spawned from a thread that lives as long as the process) and
an ``atexit`` stop.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar, cast

__all__ = ["kafka_broker_ready"]

_HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Readiness probe: a raw Metadata v1 request (no client library, no event loop, no warnings)
# --------------------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _metadata_v1(host: str, port: int, timeout: float) -> tuple[list[tuple[int, str, int]], int]:
    """Send ``Metadata`` v1 for no topics; return ``([(node_id, host, port)], controller_id)``."""
    client_id = b"skuflow-devstack"
    body = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return int(value)

    def take_str() -> str | None:
        nonlocal pos
        length = take(">h")
        if length < 0:
            return None
        text = data[pos : pos + length].decode()
        pos += length
        return text

    if take(">i") != 1:
        raise ConnectionError("unexpected correlation id")
    brokers: list[tuple[int, str, int]] = []
    for _ in range(take(">i")):
        node_id = take(">i")
        node_host = take_str() or ""
        node_port = take(">i")
        take_str()  # rack
        brokers.append((node_id, node_host, node_port))
    controller_id = take(">i")
    return brokers, controller_id


def kafka_broker_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if ``bootstrap`` answers a Metadata request listing at least one live broker."""
    host, _, port = bootstrap.rpartition(":")
    try:
        brokers, _controller = _metadata_v1(host, int(port), timeout)
    except (OSError, ConnectionError, struct.error, UnicodeDecodeError):
        return False
    return bool(brokers)


# --------------------------------------------------------------------------------------------
# Child processes that die with us
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets PR_SET_PDEATHSIG=SIGKILL (Linux; elsewhere ``None``)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child

    def preexec() -> None:  # runs in the forked child, after any setuid, before exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # parent already gone before prctl took effect
            os._exit(1)

    return preexec


_spawn_queue: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] | None = None
_spawn_lock = threading.Lock()


def _spawner_loop(jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]]) -> None:
    while True:
        job, future = jobs.get()
        try:
            future.set_result(job())
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)


def _on_spawner_thread(job: Callable[[], _T]) -> _T:
    """Run ``job`` on a daemon thread that lives until the process exits (never joined)."""
    global _spawn_queue
    with _spawn_lock:
        if _spawn_queue is None:
            _spawn_queue = queue.SimpleQueue()
            threading.Thread(
                target=_spawner_loop, args=(_spawn_queue,), name="devstack-spawner", daemon=True
            ).start()
        jobs = _spawn_queue
    future: Future[object] = Future()
    jobs.put((job, future))
    return cast(_T, future.result())


def _spawn(
    cmd: Sequence[str],
    *,
    cwd: Path,
    stdout: IO[bytes],
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Popen with PR_SET_PDEATHSIG=SIGKILL.

    The parent-death signal fires when the *thread* that forked the child exits, so children are
    forked from the main thread, or else from a dedicated thread that lives until interpreter exit
    (never from a short-lived worker thread such as ``anyio.to_thread``'s).
    """

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            preexec_fn=_die_with_parent(os.getpid()),
            # Its own session: a Ctrl-C in the terminal reaches `skuflow dev`, which drains the
            # worker *before* stopping the broker, instead of killing the broker first.
            start_new_session=True,
        )

    if threading.current_thread() is threading.main_thread():
        return run()
    return _on_spawner_thread(run)


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


class _BrokerProcess:
    """Shared start/stop/readiness logic for a broker child process."""

    name = "broker"

    def __init__(self, workdir: Path, *, port: int, log_file: Path | None) -> None:
        self.workdir = Path(workdir).resolve()
        self._auto_port = port == 0
        self.port = port or _free_port()
        self.log_file = Path(log_file).resolve() if log_file else self.workdir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._atexit_registered = False

    @property
    def bootstrap(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stdout_file(self) -> Path:
        """Where the child's own stdout/stderr go (JVM warnings, crashes)."""
        return self.workdir / f"{self.name}.out"

    def _launch(self, cmd: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self._out = self.stdout_file.open("ab")
        self._proc = _spawn(cmd, cwd=self.workdir, stdout=self._out, env=env)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {code} during startup\n"
                    f"--- {self.stdout_file}\n{_tail(self.stdout_file)}\n"
                    f"--- {self.log_file}\n{_tail(self.log_file)}"
                )
            probe_timeout = min(2.0, max(0.1, deadline - time.monotonic()))
            if kafka_broker_ready(self.bootstrap, timeout=probe_timeout):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name} at {self.bootstrap} not ready in time\n"
                    f"--- {self.log_file}\n{_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def _bind_conflict(self) -> bool:
        text = _tail(self.stdout_file, 20000) + _tail(self.log_file, 20000)
        return "Address already in use" in text

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        elif proc is not None:
            proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def start(self, timeout: float = 90.0) -> None:
        raise NotImplementedError

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
        return f"{type(self).__name__}(bootstrap={self.bootstrap!r}, pid={self.pid})"
