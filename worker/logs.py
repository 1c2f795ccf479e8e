"""Structured logging: one JSON object a line (containers) or a readable console line (dev).

Extra fields passed with ``extra={...}`` become top-level keys. Secrets never reach here as
values: settings hold them as ``Secret`` whose str/repr is ``***``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import trace
from opentelemetry.trace.span import format_span_id, format_trace_id

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _trace_fields() -> dict[str, str]:
    """The current span's ids (lowercase hex, the trace-context-in-logs convention)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
        "trace_flags": f"{context.trace_flags:02x}",
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_trace_fields(),
        }
        for key, value in _extras(record).items():
            entry[key] = (
                value if isinstance(value, str | int | float | bool | None) else repr(value)
            )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


#: Control characters escaped in console lines, so input echoed into a log (an event id, a key)
#: cannot forge a line of its own.
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}


def _one_line(text: object) -> str:
    return str(text).translate(_CONTROL)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = _extras(record)
        trace_id = _trace_fields().get("trace_id")
        if trace_id is not None:
            extras["trace_id"] = trace_id
        fields = " ".join(f"{k}={_one_line(v)}" for k, v in extras.items())
        message = _one_line(record.getMessage())
        line = f"{stamp} {record.levelname:<7} {record.name}: {message} {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
