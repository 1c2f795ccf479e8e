"""Building aiokafka clients from settings: one place for security and client options."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from config.settings import KafkaSettings
from worker.membership import GroupConsumer

log = logging.getLogger("skuflow.kafka")

_GUARDED = "__skuflow_closed_transport_guard__"


def _is_closed_transport(err: RuntimeError) -> bool:
    return "handler is closed" in str(err)


def _guard_writes(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def guarded(conn: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            return write(conn, *args, **kwargs)
        except RuntimeError as err:
            if not _is_closed_transport(err):
                raise
            conn.close(reason=CloseReason.CONNECTION_BROKEN, exc=err)
            raise KafkaConnectionError(
                f"Connection at {conn.host}:{conn.port} broken: {err}"
            ) from err

    setattr(guarded, _GUARDED, True)
    return guarded


def guard_closed_transport_writes() -> None:
    """Make a write on a connection the broker already closed a connection error under uvloop.

    aiokafka turns an ``OSError`` from ``transport.write`` into ``KafkaConnectionError``, which
    every caller handles (reconnect, retry). asyncio's transport does not raise there, but
    uvloop's raises ``RuntimeError("unable to perform operation on <TCPTransport closed=True
    ...>; the handler is closed")``; aiokafka lets that through, and when it hits the group
    coordinator's task the consumer is dead for good ("Unexpected error during coordination"):
    aio-libs/aiokafka#1038, still open for 0.14. Our broker fault suite hit it after a
    connection reset. Idempotent; remove once aiokafka catches the RuntimeError itself.
    """
    for name in ("send", "_send_sasl_token"):
        write = getattr(AIOKafkaConnection, name)
        if not getattr(write, _GUARDED, False):
            setattr(AIOKafkaConnection, name, _guard_writes(write))


guard_closed_transport_writes()


def _common(settings: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap.split(","),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.ssl_cafile) if settings.ssl_cafile else None
        options["ssl_context"] = create_ssl_context(cafile=cafile)
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.reveal()
    return options


#: aiokafka's default request timeout (ms).
REQUEST_TIMEOUT_MS = 40_000


def group_instance_id(settings: KafkaSettings, worker_class: str) -> str | None:
    """The static member id of one class's consumer: ``<kafka.group_instance_id>-<class>``, or
    None (dynamic membership) when the setting is empty. Distinct per class, so the two
    consumers of one process never claim one id even if both classes share a group."""
    return f"{settings.group_instance_id}-{worker_class}" if settings.group_instance_id else None


def build_consumer(
    settings: KafkaSettings, *, group: str | None = None, instance_id: str | None = None
) -> AIOKafkaConsumer:
    """A group consumer with manual commits; bounded prefetch (fetch sizes), no auto-commit.

    ``instance_id`` makes it a static member (:mod:`worker.membership`: fencing surfaces as
    ``InstanceFenced``; it leaves the group when stopped if ``leave_group_on_shutdown``).
    A JoinGroup is answered only when the rebalance completes, which may take the whole
    rebalance timeout: the request timeout exceeds it (as the Java client's does), or aiokafka
    abandons the join at 40 s and starts over.
    """
    return GroupConsumer(
        group_id=group or settings.group,
        group_instance_id=instance_id,
        leave_group_on_close=settings.leave_group_on_shutdown,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        rebalance_timeout_ms=settings.rebalance_timeout_ms,
        request_timeout_ms=max(REQUEST_TIMEOUT_MS, settings.rebalance_timeout_ms + 5_000),
        metadata_max_age_ms=round(settings.metadata_refresh_seconds * 1000),
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=1024 * 1024,
        **_common(settings),
    )


def build_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """A producer (acks=all, idempotent unless disabled) for dead letters and retries."""
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=settings.idempotent_producer,
        linger_ms=5,
        **_common(settings),
    )


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer, within: float) -> None:
    """Stop an aiokafka client, shielded and bounded (the broker may be gone), never raising.

    ``AIOKafkaConsumer.stop()`` raises ``CancelledError`` when a fetch request is sleeping in
    its retry backoff (after a broken connection) as the consumer closes: ``Fetcher.close()``
    awaits the fetch tasks it has just cancelled without suppressing it
    (aio-libs/aiokafka#647). Inside this shielded scope nothing else can cancel us, so that
    error is aiokafka's; the client's connections are then closed directly, which is the part
    of ``stop()`` the error skipped.
    """
    with anyio.move_on_after(within, shield=True) as scope:
        try:
            await client.stop()
        except anyio.get_cancelled_exc_class():
            if scope.cancel_called:
                raise  # our own deadline: the scope absorbs it
            log.debug("aiokafka raised CancelledError while stopping; closing its connections")
            with contextlib.suppress(Exception):
                await client._client.close()
