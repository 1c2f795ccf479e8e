"""``kcat`` (Debian package ``kcat``, librdkafka) as an independent producer for interop tests.

The command line this wraps (key and value split by a tab, one message per line)::

    kcat -P -b 127.0.0.1:9092 -t TOPIC -K '\\t' -H source=kcat -X partitioner=murmur2_random

Beware: librdkafka's default partitioner is ``consistent_random`` (CRC32 of the key), not the
Java client's / aiokafka's ``murmur2``, so the same key can land on a different partition. Pass
``partitioner="murmur2_random"`` to match aiokafka (the default here); ``None`` keeps kcat's.

And beware retries: without ``enable.idempotence`` librdkafka may write a retried batch *after*
later ones (seen here: a SKU's first event landing behind its 49 successors when the partition
leader was still settling). Idempotence keeps per-partition order through retries, so it is on
by default here, as the README tells producers.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence

__all__ = ["KcatError", "kcat_path", "kcat_produce"]


class KcatError(RuntimeError):
    """kcat exited non-zero (e.g. unknown topic, broker down, message timeout)."""


def kcat_path() -> str | None:
    """The ``kcat`` executable (or the older name ``kafkacat``), or None if not installed."""
    return shutil.which("kcat") or shutil.which("kafkacat")


def kcat_produce(
    bootstrap: str,
    topic: str,
    lines: Sequence[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
    *,
    partitioner: str | None = "murmur2_random",
    idempotent: bool = True,
    message_timeout_ms: int = 10_000,
    timeout: float = 60.0,
) -> None:
    """Produce ``(key, value)`` messages with kcat; every message gets ``headers``.

    Keys may not contain a tab or newline, values no newline (compact JSON never does). Raises
    :class:`KcatError` if kcat is missing or fails (it fails after ``message_timeout_ms`` when a
    message cannot be delivered, e.g. to a topic that does not exist).
    """
    kcat = kcat_path()
    if kcat is None:
        raise KcatError("kcat is not installed (Debian: `apt-get install kcat`)")
    for key, value in lines:
        if "\t" in key or "\n" in key or "\r" in key:
            raise ValueError(f"kcat key may not contain tab/newline: {key!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"kcat value may not contain a newline: {value!r}")
    cmd = [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\\t"]
    for name, val in (headers or {}).items():
        if "=" in name:
            raise ValueError(f"kcat header name may not contain '=': {name!r}")
        cmd += ["-H", f"{name}={val}"]
    cmd += ["-X", f"message.timeout.ms={message_timeout_ms}"]
    if partitioner is not None:
        cmd += ["-X", f"partitioner={partitioner}"]
    if idempotent:
        cmd += ["-X", "enable.idempotence=true"]
    payload = "".join(f"{key}\t{value}\n" for key, value in lines).encode()
    try:
        result = subprocess.run(
            cmd, input=payload, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise KcatError(f"kcat timed out after {timeout}s: {' '.join(cmd)}") from exc
    if result.returncode != 0:
        raise KcatError(
            f"kcat exited {result.returncode}: {' '.join(cmd)}\n"
            f"{result.stderr.decode(errors='replace')[-2000:]}"
        )
