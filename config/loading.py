"""Loading settings: TOML reading, environment overrides and msgspec error translation.

`load_struct` reads the TOML, applies environment overrides (`ENV_OVERRIDES`
and the generic `SKUFLOW_<TABLE>__<KEY>`), then converts and validates in one
strict `msgspec.convert`; every problem surfaces as a `SettingsError` whose
text is one line naming the dotted key (`engine.max_in_flight: must be >= 1`).

The root Struct is a parameter (`config.settings.load_settings` passes
`Settings`), so this module never imports the schema.
"""

import difflib
import functools
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from config.base import Secret, SettingsError, dec_hook, enc_hook

__all__ = ["ENV_OVERRIDES", "ENV_PREFIX", "load_struct"]

_S = TypeVar("_S", bound=msgspec.Struct)


@functools.cache
def _schema(root: type[msgspec.Struct]) -> dict[str, dict[str, Any]]:
    """Table name -> key -> annotated type, for env overrides and error hints."""
    return {
        table.name: {key.name: key.type for key in msgspec.structs.fields(table.type)}
        for table in msgspec.structs.fields(root)
    }


ENV_PREFIX = "SKUFLOW_"
# The contract's always-honoured variables. Any scalar key can also be set as
# SKUFLOW_<TABLE>__<KEY>, e.g. SKUFLOW_ENGINE__MAX_IN_FLIGHT=64.
ENV_OVERRIDES: Mapping[str, tuple[str, str]] = {
    "SKUFLOW_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "SKUFLOW_KAFKA_GROUP": ("kafka", "group"),
    "SKUFLOW_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "SKUFLOW_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "SKUFLOW_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "SKUFLOW_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "SKUFLOW_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "SKUFLOW_DATABASE_URL": ("database", "url"),
    "SKUFLOW_B1_URL": ("b1", "url"),
    "SKUFLOW_B1_COMPANY": ("b1", "company"),
    "SKUFLOW_B1_USER": ("b1", "user"),
    "SKUFLOW_B1_PASSWORD": ("b1", "password"),
    "SKUFLOW_SPAPI_ENDPOINT": ("spapi", "endpoint"),
    "SKUFLOW_LWA_ENDPOINT": ("spapi", "lwa_endpoint"),
    "SKUFLOW_LWA_CLIENT_ID": ("spapi", "client_id"),
    "SKUFLOW_LWA_CLIENT_SECRET": ("spapi", "client_secret"),
    "SKUFLOW_LWA_REFRESH_TOKEN": ("spapi", "refresh_token"),
    "SKUFLOW_HEALTH_PORT": ("health", "port"),
    "SKUFLOW_LOG_FORMAT": ("log", "format"),
}


def load_struct(root: type[_S], path: Path | None, env: Mapping[str, str]) -> _S:
    """`root` from `path` (else `$SKUFLOW_CONFIG`, else defaults) plus `env` overrides."""
    schema = _schema(root)
    if path is None and env.get("SKUFLOW_CONFIG"):
        path = Path(env["SKUFLOW_CONFIG"])
    raw = _read_toml(path) if path is not None else {}
    for (table, key), (var, text) in _env_overrides(env).items():
        value = _parse_env(schema, table, key, var, text)
        section = raw.setdefault(table, {})
        if not isinstance(section, dict):
            raise SettingsError(table, "expected a table")
        section[key] = value
    try:
        return msgspec.convert(raw, root, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise _translate(schema, str(exc)) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise SettingsError(str(path), "settings file not found") from None
    except OSError as exc:
        raise SettingsError(str(path), f"cannot read settings file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(str(path), "settings file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(str(path), f"invalid TOML: {exc}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(table, key) -> (variable, text); two variables disagreeing is an error."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    candidates = [(var, target) for var, target in ENV_OVERRIDES.items() if var in env]
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and "__" in var:
            table, _, key = var.removeprefix(ENV_PREFIX).lower().partition("__")
            candidates.append((var, (table, key)))
    for var, target in candidates:
        if target in found and found[target][1] != env[var]:
            raise SettingsError(".".join(target), f"set by both {found[target][0]} and {var}")
        found[target] = (var, env[var])
    return found


def _parse_env(schema: dict[str, dict[str, Any]], table: str, key: str, var: str, text: str) -> Any:
    dotted = f"{table}.{key}"
    if table not in schema or key not in schema[table]:
        raise SettingsError(dotted, f"unknown key{_suggest(schema, table, key)} (from {var})")
    field_type = schema[table][key]
    if typing.get_origin(field_type) is dict:
        raise SettingsError(dotted, f"is a table and cannot be set from {var}")
    if text == "" and type(None) in typing.get_args(field_type):
        return None  # an empty variable unsets an optional key
    try:
        value = msgspec.convert(text, field_type, strict=False, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        problem = _lower(_split_path(str(exc))[0]) + _choices_hint(field_type)
        secret = Secret in (field_type, *typing.get_args(field_type))
        source = var if secret else f"{var}={text!r}"
        raise SettingsError(dotted, f"{problem} (from {source})") from None
    return msgspec.to_builtins(value, enc_hook=_reveal)


def _reveal(obj: object) -> object:
    if isinstance(obj, Secret):
        return obj.reveal()
    return enc_hook(obj)


_AT_PATH = re.compile(r"(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<key>.*)`", re.DOTALL)


def _split_path(message: str) -> tuple[str, str]:
    """msgspec's "Expected `int` - at `$.engine.x[...]`" -> ("Expected `int`", "engine.x")."""
    match = _AT_PATH.fullmatch(message)
    assert match is not None  # the pattern matches any string
    path = (match["path"] or "").replace("[...]", "").lstrip(".")
    return match["problem"], path


def _translate(schema: dict[str, dict[str, Any]], message: str) -> SettingsError:
    problem, path = _split_path(message)
    unknown = _UNKNOWN_FIELD.fullmatch(problem)
    if unknown:
        key = unknown["key"]
        return SettingsError(
            f"{path}.{key}" if path else key, f"unknown key{_suggest(schema, path, key)}"
        )
    problem = _lower(problem).replace("expected `object`", "expected a table")
    table, _, key = path.partition(".")
    if problem.startswith("invalid enum value") and key in schema.get(table, {}):
        problem += _choices_hint(schema[table][key])
    return SettingsError(path, problem)


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _suggest(schema: dict[str, dict[str, Any]], table: str, key: str) -> str:
    known = list(schema[table]) if table in schema else list(schema) if not table else []
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choices_hint(field_type: Any) -> str:
    choices = list(_literal_choices(field_type))
    return f"; expected one of {', '.join(map(repr, choices))}" if choices else ""


def _literal_choices(field_type: Any) -> Iterator[str]:
    if typing.get_origin(field_type) is Literal:
        yield from map(str, typing.get_args(field_type))
    elif typing.get_origin(field_type) in (typing.Union, types.UnionType):
        for member in typing.get_args(field_type):
            yield from _literal_choices(member)
