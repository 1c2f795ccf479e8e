"""The Apache Kafka broker jars and the Java runtime that runs them.

:func:`resolve_kafka_libs` copies ``org.apache.kafka:kafka_2.13`` and its dependencies (see
``devstack/kafka/pom.xml``) from Maven Central into a cache directory once, guarded by a file lock
and a marker; :func:`java_available` checks for a Java 17+ runtime.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "default_cache_dir",
    "java_available",
    "resolve_kafka_libs",
]

KAFKA_VERSION = "4.3.1"
"""Must match ``kafka.version`` in ``devstack/kafka/pom.xml``."""

_POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_MARKER = ".resolved"


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
