"""The leaf types every settings module shares: `SettingsError`, `Secret` and the msgspec hooks.

Credentials are `Secret`s: they print as `***`, `msgspec` refuses to encode
them without `enc_hook` (which writes `***`), and only `.reveal()` gives the
value to the connector that needs it.
"""

import hmac
from pathlib import Path

__all__ = ["REDACTED", "Secret", "SettingsError", "dec_hook", "enc_hook"]

REDACTED = "***"


class SettingsError(Exception):
    """A settings problem, reported as one line naming the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class Secret:
    """A credential. Prints as `***` everywhere; `reveal()` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(_utf8(self._value), _utf8(other._value))

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def dec_hook(type_: type, obj: object) -> object:
    """msgspec decode hook for the custom types used in settings."""
    if type_ is Secret or type_ is Path:
        if isinstance(obj, type_):
            return obj
        if not isinstance(obj, str):
            raise TypeError(f"Expected `str`, got `{type(obj).__name__}`")
        if type_ is Path and not obj:
            raise ValueError("must not be empty")
        return type_(obj)
    raise NotImplementedError(f"no decoder for {type_!r}")


def enc_hook(obj: object) -> object:
    """msgspec encode hook: secrets become `***`, paths become strings."""
    if isinstance(obj, Secret):
        return REDACTED
    if isinstance(obj, Path):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")
