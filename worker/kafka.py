"""Building aiokafka clients from settings: one place for security and client options."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from config.settings import KafkaSettings


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


def build_consumer(settings: KafkaSettings, *, group: str | None = None) -> AIOKafkaConsumer:
    """A group consumer with manual commits; bounded prefetch (fetch sizes), no auto-commit."""
    return AIOKafkaConsumer(
        group_id=group or settings.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 10),
        max_poll_interval_ms=settings.max_poll_interval_ms,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=1024 * 1024,
        rebalance_timeout_ms=max(60_000, settings.session_timeout_ms),
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
