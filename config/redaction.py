"""Redaction for display: secrets and URL passwords shown as `***`."""

import base64
import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

import msgspec

from config.base import REDACTED, enc_hook

__all__ = ["redact_secrets", "redact_url", "redacted_dict"]

_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):\S*@")
_URL_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:password|sslpassword|passwd|pwd|secret|token)=)[^&#\s]*", re.IGNORECASE
)


def redact_url(text: str) -> str:
    """Mask a password in `scheme://user:password@host` and `?password=` (conservatively)."""
    text = _URL_USERINFO.sub(rf"\g<head>:{REDACTED}@", text)
    return _URL_SECRET_PARAM.sub(rf"\g<head>{REDACTED}", text)


def secret_forms(secret: str) -> set[str]:
    """The ways a credential shows up when a server echoes what it was sent: as is, form- or
    URL-encoded, JSON-escaped, base64 (e.g. inside a Basic authorization header)."""
    derived = {
        quote_plus(secret),
        quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode().rstrip("="),
    }
    # (a derived form of a tiny secret would mask unrelated text; the raw one is always masked)
    return {secret} | {form for form in derived if len(form) >= 4}


def redact_secrets(text: str, *secrets: str | None) -> str:
    """``text`` with every form of every secret replaced by ``***`` (longest forms first)."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


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
