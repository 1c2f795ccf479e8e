"""Redaction for display: secrets and URL passwords shown as `***`."""

import re
from typing import Any

import msgspec

from config.base import REDACTED, enc_hook

__all__ = ["redact_url", "redacted_dict"]

_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):\S*@")
_URL_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:password|sslpassword|passwd|pwd|secret|token)=)[^&#\s]*", re.IGNORECASE
)


def redact_url(text: str) -> str:
    """Mask a password in `scheme://user:password@host` and `?password=` (conservatively)."""
    text = _URL_USERINFO.sub(rf"\g<head>:{REDACTED}@", text)
    return _URL_SECRET_PARAM.sub(rf"\g<head>{REDACTED}", text)


def redacted_dict(settings: msgspec.Struct) -> dict[str, Any]:
    """Plain builtins for display: secrets and URL passwords shown as `***`."""
    scrubbed: dict[str, Any] = _scrub(msgspec.to_builtins(settings, enc_hook=enc_hook))
    return scrubbed


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value
