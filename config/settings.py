"""Settings: the TOML schema, environment overrides and secret handling.

One frozen msgspec Struct per TOML table, gathered under `Settings`. Every key
has a default, so an empty file (or no file) is valid. `load_settings` reads
the TOML, applies environment overrides, then converts and validates in one
strict `msgspec.convert`; every problem surfaces as a `SettingsError` whose
text is one line naming the dotted key (`engine.max_in_flight: must be >= 1`).

Credentials are `Secret`s: they print as `***`, `msgspec` refuses to encode
them without `enc_hook` (which writes `***`), and only `.reveal()` gives the
value to the connector that needs it.
"""

import csv
import difflib
import hmac
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TextIO

import msgspec

__all__ = [
    "DEFAULTS_PATH",
    "ENV_OVERRIDES",
    "REDACTED",
    "B1Settings",
    "DatabaseSettings",
    "DispatchSettings",
    "EngineSettings",
    "HealthSettings",
    "KafkaSettings",
    "LogSettings",
    "MappingsSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "SpApiSettings",
    "StockSettings",
    "TopicsSettings",
    "dec_hook",
    "enc_hook",
    "load_settings",
    "load_sku_map",
    "redact_url",
    "redacted_dict",
]

REDACTED = "***"
DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
DEFAULT_DATABASE_URL = "postgresql://skuflow@127.0.0.1:5432/skuflow"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


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


# --- validation helpers (each raises SettingsError naming the dotted key) ---


def _at_least(key: str, value: float, minimum: float) -> None:
    if not value >= minimum:  # also rejects NaN
        raise SettingsError(key, f"must be >= {minimum}")


def _positive(key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(key, "must be a finite number > 0")


def _non_empty(key: str, value: str) -> None:
    if not value.strip():
        raise SettingsError(key, "must not be empty")


def _http_url(key: str, value: str) -> None:
    # Never echo the value: a URL may carry credentials.
    if not value.startswith(("http://", "https://")):
        raise SettingsError(key, "must be an http:// or https:// URL")


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bootstrap: str = "127.0.0.1:9092"
    group: str = "skuflow"
    client_id: str = "skuflow"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    allow_insecure_sasl: bool = False
    session_timeout_ms: int = 45_000
    max_poll_interval_ms: int = 300_000
    #: Idempotent producer for dead letters and retries (needs the broker's IDEMPOTENT_WRITE;
    #: turn off only for brokers without InitProducerId, e.g. the Tansu dev fallback).
    idempotent_producer: bool = True

    def __post_init__(self) -> None:
        _non_empty("kafka.bootstrap", self.bootstrap)
        for broker in self.bootstrap.split(","):
            host, _, port = broker.strip().rpartition(":")
            if not (host and port.isdigit() and 0 < int(port) < 65536):
                raise SettingsError("kafka.bootstrap", f"{broker.strip()!r} is not host:port")
        _non_empty("kafka.group", self.group)
        _non_empty("kafka.client_id", self.client_id)
        _at_least("kafka.session_timeout_ms", self.session_timeout_ms, 1)
        _at_least("kafka.max_poll_interval_ms", self.max_poll_interval_ms, 1)
        protocol = self.security_protocol
        cleartext_password = protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN"
        if cleartext_password and not self.allow_insecure_sasl:
            raise SettingsError(
                "kafka.security_protocol",
                "SASL_PLAINTEXT with sasl_mechanism PLAIN sends the password in cleartext; "
                "use SASL_SSL, or set kafka.allow_insecure_sasl = true to accept that",
            )
        for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
            is_set = getattr(self, name) is not None
            if protocol.startswith("SASL_") and not is_set:
                raise SettingsError(f"kafka.{name}", f"required with security_protocol {protocol}")
            if not protocol.startswith("SASL_") and is_set:
                raise SettingsError(
                    f"kafka.{name}", f"set, but security_protocol {protocol} would ignore it"
                )
        if self.ssl_cafile is not None and not protocol.endswith("SSL"):
            raise SettingsError(
                "kafka.ssl_cafile", f"set, but security_protocol {protocol} does not use TLS"
            )


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Secret = Secret(DEFAULT_DATABASE_URL)
    min_pool: int = 1
    max_pool: int = 10

    def __post_init__(self) -> None:
        if not self.url.reveal().startswith(("postgresql://", "postgres://")):
            raise SettingsError("database.url", "must be a postgresql:// URL")
        _at_least("database.min_pool", self.min_pool, 0)
        _at_least("database.max_pool", self.max_pool, max(1, self.min_pool))


class TopicsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    dispatch: str = "wms.dispatch-confirmations"
    stock: str = "wms.stock-adjustments"
    dead_letter: str = "skuflow.dead-letter"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in ("dispatch", "stock", "dead_letter"):
            topic: str = getattr(self, name)
            if not _TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
                raise SettingsError(
                    f"topics.{name}", "not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"
                )
            if topic in seen:
                raise SettingsError(f"topics.{name}", f"same topic as topics.{seen[topic]}")
            seen[topic] = name


class MappingsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku_map: Path | None = None
    warehouses: dict[str, str] = {}

    def __post_init__(self) -> None:
        location_of: dict[str, str] = {}
        for location, code in self.warehouses.items():
            _non_empty("mappings.warehouses", location)
            _non_empty(f"mappings.warehouses.{location}", code)
            if code in location_of:
                raise SettingsError(
                    "mappings.warehouses",
                    f"locations {location_of[code]!r} and {location!r} both map to "
                    f"ERP warehouse {code!r}; the mapping must be one-to-one",
                )
            location_of[code] = location


class B1Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "https://127.0.0.1:50000/b1s/v1"
    company: str = "SBODEMO"
    user: str = "manager"
    password: Secret | None = None
    verify_tls: bool = True
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        _http_url("b1.url", self.url)
        _non_empty("b1.company", self.company)
        _non_empty("b1.user", self.user)
        _positive("b1.timeout_seconds", self.timeout_seconds)


class SpApiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    endpoint: str = "https://sellingpartnerapi-eu.amazon.com"
    lwa_endpoint: str = "https://api.amazon.com/auth/o2/token"
    client_id: str | None = None
    client_secret: Secret | None = None
    refresh_token: Secret | None = None
    rate_per_second: float = 2.0
    burst: int = 10

    def __post_init__(self) -> None:
        _http_url("spapi.endpoint", self.endpoint)
        _http_url("spapi.lwa_endpoint", self.lwa_endpoint)
        _positive("spapi.rate_per_second", self.rate_per_second)
        _at_least("spapi.burst", self.burst, 1)


class StockSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    window_seconds: float = 60.0
    window_max_lines: int = 500

    def __post_init__(self) -> None:
        _positive("stock.window_seconds", self.window_seconds)
        _at_least("stock.window_max_lines", self.window_max_lines, 1)


class DispatchSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    at_risk_seconds: float = 7200.0
    #: Runners reserved for the urgent class (dispatch confirmations), beside [engine]'s.
    max_in_flight: int = 32
    #: The urgent class's own consumer group (its own fetch path); default "<kafka.group>.urgent".
    group: str | None = None

    def __post_init__(self) -> None:
        _positive("dispatch.at_risk_seconds", self.at_risk_seconds)
        _at_least("dispatch.max_in_flight", self.max_in_flight, 1)


class HealthSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: int = 8080  # 0 binds a free port (tests)
    host: str = "0.0.0.0"
    stall_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError("health.port", "must be between 0 and 65535")
        _non_empty("health.host", self.host)
        _positive("health.stall_seconds", self.stall_seconds)


class LogSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: LogFormat = "json"
    level: LogLevel = "INFO"


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_in_flight: int = 256
    max_buffered_messages: int = 20_000
    max_buffered_bytes: int = 64 * 1024 * 1024
    resume_ratio: float = 0.5
    commit_interval_seconds: float = 1.0
    drain_timeout_seconds: float = 30.0
    revoke_timeout_seconds: float = 10.0
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 60.0
    retry_multiplier: float = 2.0
    max_attempts: int = 10
    offset_map_max_bytes: int = 3000
    fetch_max_records: int = 2000

    def __post_init__(self) -> None:
        for name in (
            "max_in_flight",
            "max_buffered_messages",
            "max_buffered_bytes",
            "max_attempts",
            "offset_map_max_bytes",
            "fetch_max_records",
        ):
            _at_least(f"engine.{name}", getattr(self, name), 1)
        for name in (
            "commit_interval_seconds",
            "drain_timeout_seconds",
            "revoke_timeout_seconds",
            "retry_initial_seconds",
            "retry_max_seconds",
        ):
            _positive(f"engine.{name}", getattr(self, name))
        if not 0 < self.resume_ratio < 1:
            raise SettingsError("engine.resume_ratio", "must be between 0 and 1 (exclusive)")
        _at_least("engine.retry_max_seconds", self.retry_max_seconds, self.retry_initial_seconds)
        if not (self.retry_multiplier >= 1 and math.isfinite(self.retry_multiplier)):
            raise SettingsError("engine.retry_multiplier", "must be a finite number >= 1")


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole settings file; every table is optional."""

    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    topics: TopicsSettings = msgspec.field(default_factory=TopicsSettings)
    mappings: MappingsSettings = msgspec.field(default_factory=MappingsSettings)
    b1: B1Settings = msgspec.field(default_factory=B1Settings)
    spapi: SpApiSettings = msgspec.field(default_factory=SpApiSettings)
    stock: StockSettings = msgspec.field(default_factory=StockSettings)
    dispatch: DispatchSettings = msgspec.field(default_factory=DispatchSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)


# table name -> key -> annotated type, for env overrides and error hints
_SCHEMA: dict[str, dict[str, Any]] = {
    table.name: {key.name: key.type for key in msgspec.structs.fields(table.type)}
    for table in msgspec.structs.fields(Settings)
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


def load_settings(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from `path` (else `$SKUFLOW_CONFIG`, else defaults) plus `env` overrides."""
    if path is None and env.get("SKUFLOW_CONFIG"):
        path = Path(env["SKUFLOW_CONFIG"])
    raw = _read_toml(path) if path is not None else {}
    for (table, key), (var, text) in _env_overrides(env).items():
        value = _parse_env(table, key, var, text)
        section = raw.setdefault(table, {})
        if not isinstance(section, dict):
            raise SettingsError(table, "expected a table")
        section[key] = value
    try:
        return msgspec.convert(raw, Settings, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc)) from exc


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


def _parse_env(table: str, key: str, var: str, text: str) -> Any:
    dotted = f"{table}.{key}"
    if table not in _SCHEMA or key not in _SCHEMA[table]:
        raise SettingsError(dotted, f"unknown key{_suggest(table, key)} (from {var})")
    field_type = _SCHEMA[table][key]
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


def _translate(message: str) -> SettingsError:
    problem, path = _split_path(message)
    unknown = _UNKNOWN_FIELD.fullmatch(problem)
    if unknown:
        key = unknown["key"]
        return SettingsError(f"{path}.{key}" if path else key, f"unknown key{_suggest(path, key)}")
    problem = _lower(problem).replace("expected `object`", "expected a table")
    table, _, key = path.partition(".")
    if problem.startswith("invalid enum value") and key in _SCHEMA.get(table, {}):
        problem += _choices_hint(_SCHEMA[table][key])
    return SettingsError(path, problem)


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _suggest(table: str, key: str) -> str:
    known = list(_SCHEMA[table]) if table in _SCHEMA else list(_SCHEMA) if not table else []
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


# --- redaction ---

_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):\S*@")
_URL_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:password|sslpassword|passwd|pwd|secret|token)=)[^&#\s]*", re.IGNORECASE
)


def redact_url(text: str) -> str:
    """Mask a password in `scheme://user:password@host` and `?password=` (conservatively)."""
    text = _URL_USERINFO.sub(rf"\g<head>:{REDACTED}@", text)
    return _URL_SECRET_PARAM.sub(rf"\g<head>{REDACTED}", text)


def redacted_dict(settings: Settings) -> dict[str, Any]:
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


# --- SKU map ---


def load_sku_map(path: Path) -> dict[str, str]:
    """Read a `sku,item_code` CSV into {sku: item_code}; errors name `path:line`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            return _parse_sku_map(file, str(path))
    except FileNotFoundError:
        raise SettingsError(str(path), "SKU map file not found") from None
    except OSError as exc:
        raise SettingsError(str(path), f"cannot read SKU map: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(str(path), "SKU map is not UTF-8") from None


def _parse_sku_map(file: TextIO, where: str) -> dict[str, str]:
    rows = csv.reader(file)
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    try:
        header = [cell.strip() for cell in next(rows, [])]
        if header != ["sku", "item_code"]:
            raise SettingsError(f"{where}:1", "expected the header 'sku,item_code'")
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise SettingsError(f"{where}:{line}", f"expected 2 columns, got {len(row)}")
            sku, item_code = (cell.strip() for cell in row)
            if not sku:
                raise SettingsError(f"{where}:{line}", "blank sku")
            if not item_code:
                raise SettingsError(f"{where}:{line}", f"blank item_code for sku {sku!r}")
            if sku in mapping:
                raise SettingsError(
                    f"{where}:{line}", f"duplicate sku {sku!r} (first on line {first_line[sku]})"
                )
            mapping[sku] = item_code
            first_line[sku] = line
    except csv.Error as exc:
        raise SettingsError(f"{where}:{rows.line_num}", f"malformed CSV: {exc}") from None
    return mapping
