"""Settings: the TOML schema, one frozen msgspec Struct per TOML table, gathered under `Settings`.

Every key has a default, so an empty file (or no file) is valid. `load_settings`
reads the TOML, applies environment overrides, then converts and validates in
one strict `msgspec.convert`; every problem surfaces as a `SettingsError` whose
text is one line naming the dotted key (`engine.max_in_flight: must be >= 1`).

Credentials are `Secret`s: they print as `***`, `msgspec` refuses to encode
them without `enc_hook` (which writes `***`), and only `.reveal()` gives the
value to the connector that needs it.

The machinery lives beside this module, and everything is importable from here:
`config.base` (`SettingsError`, `Secret`, the msgspec hooks), `config.loading`
(TOML, environment overrides, error messages), `config.redaction` (`redacted_dict`,
`redact_url`) and `config.mappings` (`load_sku_map`). None of them imports this module.
"""

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from config.base import REDACTED as REDACTED
from config.base import Secret as Secret
from config.base import SettingsError as SettingsError
from config.base import dec_hook as dec_hook
from config.base import enc_hook as enc_hook
from config.loading import ENV_OVERRIDES as ENV_OVERRIDES
from config.loading import ENV_PREFIX as ENV_PREFIX
from config.loading import load_struct
from config.mappings import load_sku_map as load_sku_map
from config.redaction import redact_url as redact_url
from config.redaction import redacted_dict as redacted_dict

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
    "SekoSettings",
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

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
DEFAULT_DATABASE_URL = "postgresql://skuflow@127.0.0.1:5432/skuflow"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


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
#: Kafka validates a group instance id as a topic name; the consumers append "-urgent" (7).
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,242}")


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
    #: Static group membership (KIP-345): a stable id of this process, e.g. its pod name. ""
    #: (default): dynamic membership. Each class's consumer joins as "<id>-urgent" or
    #: "<id>-normal", and a restart with the same id gets its partitions back at once.
    group_instance_id: str = ""
    #: A member silent this long is dead and its partitions are reassigned (a static member's
    #: partitions wait this long for it to come back).
    session_timeout_ms: int = 15_000
    heartbeat_interval_ms: int = 3_000
    #: How long the group waits for every member to rejoin once a rebalance starts (each
    #: member's revocation must finish within it).
    rebalance_timeout_ms: int = 30_000
    max_poll_interval_ms: int = 300_000
    #: A static member leaves the group when it stops (SIGTERM drain), so its partitions move
    #: at once; false keeps them for its return within session_timeout_ms (stable ids, e.g. a
    #: StatefulSet). A crash never leaves.
    leave_group_on_shutdown: bool = True
    #: Cluster metadata refresh: a subscribed topic created after start is consumed within this.
    metadata_refresh_seconds: float = 10.0
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
        if self.group_instance_id and not _INSTANCE_ID.fullmatch(self.group_instance_id):
            raise SettingsError(
                "kafka.group_instance_id",
                "1-242 of A-Z a-z 0-9 . _ - (each consumer adds -urgent or -normal; Kafka "
                "allows 249)",
            )
        _at_least("kafka.session_timeout_ms", self.session_timeout_ms, 1)
        _at_least("kafka.heartbeat_interval_ms", self.heartbeat_interval_ms, 1)
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise SettingsError(
                "kafka.heartbeat_interval_ms", "must be below kafka.session_timeout_ms"
            )
        _at_least("kafka.rebalance_timeout_ms", self.rebalance_timeout_ms, 1)
        _at_least("kafka.max_poll_interval_ms", self.max_poll_interval_ms, 1)
        _positive("kafka.metadata_refresh_seconds", self.metadata_refresh_seconds)
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
    #: Group commit (staging rows): a batch is one transaction of up to batch_max_rows rows,
    #: sent batch_max_wait_seconds after its first row at the latest; at most
    #: batches_in_flight transactions at once (each on a pool connection).
    batch_max_rows: int = 500
    batch_max_wait_seconds: float = 0.002
    batches_in_flight: int = 2

    def __post_init__(self) -> None:
        if not self.url.reveal().startswith(("postgresql://", "postgres://")):
            raise SettingsError("database.url", "must be a postgresql:// URL")
        _at_least("database.min_pool", self.min_pool, 0)
        _at_least("database.max_pool", self.max_pool, max(1, self.min_pool))
        _at_least("database.batch_max_rows", self.batch_max_rows, 1)
        if not 0 <= self.batch_max_wait_seconds <= 1:
            raise SettingsError("database.batch_max_wait_seconds", "must be between 0 and 1")
        _at_least("database.batches_in_flight", self.batches_in_flight, 1)
        if self.batches_in_flight >= self.max_pool:
            raise SettingsError(
                "database.batches_in_flight", "must be below database.max_pool (others need one)"
            )


class TopicsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    dispatch: str = "wms.dispatch-confirmations"
    stock: str = "wms.stock-adjustments"
    dead_letter: str = "skuflow.dead-letter"
    #: order.received / order.changed / order.cancelled, keyed by marketplace order id.
    orders: str = "marketplace.orders"
    #: return.received from the warehouse, keyed by marketplace order id.
    returns: str = "wms.returns"
    #: order.released / order.held, published by skuflow for the warehouse (keyed by order id).
    released: str = "wms.orders-released"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in ("dispatch", "stock", "dead_letter", "orders", "returns", "released"):
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
    #: B1 codes read as a collision, not a bad line: ODBC -2035 "This entry already exists in
    #: the following tables". The posting looks its document up, then retries; never bisected.
    collision_codes: frozenset[int] = frozenset({-2035})
    #: A user-defined field of the business partner (``U_...``, "Y" = on hold) that marks a
    #: customer on credit hold; its open orders then read "credit block". Standard B1 has no
    #: such flag [unconfirmed: installations add one]; "" = none (a hold shows only as the
    #: order's "Approved" checkbox, ``Confirmed``, cleared).
    credit_hold_field: str = ""

    def __post_init__(self) -> None:
        _http_url("b1.url", self.url)
        if self.credit_hold_field and not self.credit_hold_field.startswith("U_"):
            raise SettingsError("b1.credit_hold_field", "a user-defined field: U_...")
        _non_empty("b1.company", self.company)
        _non_empty("b1.user", self.user)
        _positive("b1.timeout_seconds", self.timeout_seconds)


class ErpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The ERP the stock flow posts to: SAP Business One ([b1]) or SAP ECC ([ecc]).
    kind: Literal["b1", "ecc"] = "b1"


def default_movement_types() -> dict[str, str]:
    """Reason → movement types of a net increase / net decrease (ECC)."""
    return {
        "*": "501/201",  # any other reason: receipt without PO / goods issue to cost centre
        "receipt": "501/502",  # a negative receipt reverses one
        "found": "501/502",
        "count": "701/702",  # inventory differences [UNCONF: through MBGMCR]
        "damaged": "552/551",  # scrapping; a positive one reverses it
        "write-off": "552/551",
        "issue": "202/201",
    }


def default_transfer_types() -> dict[str, str]:
    """Transfers: between storage locations of one plant, between plants (one step)."""
    return {"sloc": "311", "plant": "301"}


def default_gm_codes() -> dict[str, str]:
    return {
        "501": "05", "502": "05", "561": "05", "562": "05", "701": "05", "702": "03",
        "201": "03", "202": "03", "551": "03", "552": "03", "311": "04", "301": "04",
    }  # fmt: skip


def default_sales_functions() -> dict[str, str]:
    """The customer's wrapper function modules (a BAPI + COMMIT WORK each) by what they make."""
    return {
        "delivery": "Z_SKUFLOW_DELIVERY_CREATE",  # BAPI_OUTB_DELIVERY_CREATE_SLS + goods issue
        "invoice": "Z_SKUFLOW_BILLING_CREATE",  # BAPI_BILLINGDOC_CREATEMULTIPLE
        "return": "Z_SKUFLOW_RETURN_CREATE",  # BAPI_CUSTOMERRETURN_CREATE + returns delivery
        "credit_note": "Z_SKUFLOW_CREDIT_MEMO_CREATE",
        "reject": "Z_SKUFLOW_ORDER_REJECT",  # reason for rejection on every item: cancelled
    }


class EccSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """SAP ECC over its ICF services: IDoc-XML in, SOAP-RFC table reads back."""

    url: str = "https://127.0.0.1:44300"
    client: str = "100"  # sap-client / MANDT
    sid: str = "PRD"  # the system id: receiver port SAP<SID>, partner <SID>CLNT<client>
    user: str = "SKUFLOW"
    password: Secret | None = None
    verify_tls: bool = True
    timeout_seconds: float = 30.0
    #: "idoc_xml": POST /sap/bc/idoc_xml; "soap": POST /sap/bc/srt/idoc (SRTIDOC registered).
    inbound: Literal["idoc_xml", "soap"] = "idoc_xml"
    #: EDI_DC40 as the WE20 inbound partner profile of skuflow's logical system expects.
    sender_port: str = "SKUFLOW"
    sender_partner: str = "SKUFLOW"
    receiver_port: str = ""  # empty: SAP<SID>
    receiver_partner: str = ""  # empty: <SID>CLNT<client>
    #: Per reason (lower case; "*": every other), the movement types of a window's net
    #: increase and net decrease, "501/502"; movements of different reasons never net together.
    movement_types: dict[str, str] = msgspec.field(default_factory=default_movement_types)
    #: Movement type → BAPI_GOODSMVT_CREATE GM code (T158G).
    gm_codes: dict[str, str] = msgspec.field(default_factory=default_gm_codes)
    #: Transfers between storage locations of one plant ("sloc") and between plants ("plant").
    transfer_types: dict[str, str] = msgspec.field(default_factory=default_transfer_types)
    #: How long a posting follows its IDoc before it waits and follows it again later.
    application_wait_seconds: float = 120.0
    poll_seconds: float = 0.5
    poll_max_seconds: float = 10.0
    #: An IDoc whose answer was lost is looked up in EDIDC only this long after sending.
    lookup_grace_seconds: float = 60.0
    #: A 51 on a material lock: "resend" a new IDoc, or "reprocessed" — ECC's RBDMANIN job
    #: posts the same IDoc again, so skuflow follows it (resending would post twice).
    lock_errors: Literal["resend", "reprocessed"] = "resend"
    #: Sales documents. The sales area sent in ORDERS05 E1EDK14 (all three empty: ECC
    #: determines it from EDSDC by the sold-to party) and the order type (empty: ECC's OR).
    sales_org: str = "1000"
    distribution_channel: str = "10"
    division: str = "00"
    order_type: str = "OR"
    #: The wrapper function modules (SOAP-RFC) by what they create (README: ECC sales).
    sales_functions: dict[str, str] = msgspec.field(default_factory=default_sales_functions)
    rejection_reason: str = "10"  # VBAP-ABGRU set on every item to cancel an order
    return_movement_type: str = "651"  # goods receipt of a returns delivery [UNCONF]
    discount_condition: str = "RB00"  # E1EDP05 condition type of a line's discount [UNCONF]
    #: create_sales_order follows its ORDERS IDoc this long (then: ambiguous, found later).
    sales_order_wait_seconds: float = 30.0
    #: Message "class number" read as a lock on a sales document / a duplicate PO [UNCONF].
    sales_lock_messages: list[str] = msgspec.field(default_factory=lambda: ["V1 042"])
    duplicate_po_messages: list[str] = msgspec.field(default_factory=lambda: ["V4 115"])

    def __post_init__(self) -> None:
        _http_url("ecc.url", self.url)
        if not (len(self.client) == 3 and self.client.isdigit()):
            raise msgspec.ValidationError("ecc.client must be three digits (sap-client)")
        if not (len(self.sid) == 3 and self.sid.isalnum()):
            raise msgspec.ValidationError("ecc.sid must be the three-character system id")
        _non_empty("ecc.user", self.user)
        _non_empty("ecc.sender_port", self.sender_port)
        _non_empty("ecc.sender_partner", self.sender_partner)
        _positive("ecc.timeout_seconds", self.timeout_seconds)
        _positive("ecc.application_wait_seconds", self.application_wait_seconds)
        _positive("ecc.poll_seconds", self.poll_seconds)
        _at_least("ecc.poll_max_seconds", self.poll_max_seconds, self.poll_seconds)
        _at_least("ecc.lookup_grace_seconds", self.lookup_grace_seconds, 0)
        if set(self.transfer_types) != {"sloc", "plant"}:
            raise msgspec.ValidationError('ecc.transfer_types needs exactly "sloc" and "plant"')
        for move_type in self.transfer_types.values():
            if move_type not in self.gm_codes:
                raise msgspec.ValidationError(
                    f"ecc.gm_codes has no GM code for movement type {move_type}"
                )
        self._check_sales()
        if "*" not in self.movement_types:
            raise msgspec.ValidationError('ecc.movement_types needs "*" (every other reason)')
        for reason, pair in self.movement_types.items():
            types = pair.split("/")
            if len(types) != 2 or not all(len(t) == 3 and t.isdigit() for t in types):
                raise msgspec.ValidationError(
                    f"ecc.movement_types.{reason}: increase/decrease movement types "
                    f"such as 501/502, not {pair!r}"
                )
            for move_type in types:
                if move_type not in self.gm_codes:
                    raise msgspec.ValidationError(
                        f"ecc.gm_codes has no GM code for movement type {move_type}"
                    )

    def _check_sales(self) -> None:
        area = (self.sales_org, self.distribution_channel, self.division)
        if any(area) and not all(area):
            raise msgspec.ValidationError(
                "ecc.sales_org, distribution_channel and division: all three, or none (EDSDC)"
            )
        lengths = {"sales_org": 4, "distribution_channel": 2, "division": 2, "order_type": 4}
        for name, most in {**lengths, "discount_condition": 4}.items():
            value = getattr(self, name)
            if len(value) > most:
                raise msgspec.ValidationError(f"ecc.{name} has at most {most} characters")
        if not 0 < len(self.rejection_reason) <= 2:
            raise msgspec.ValidationError("ecc.rejection_reason: a reason for rejection (ABGRU)")
        if not (len(self.return_movement_type) == 3 and self.return_movement_type.isdigit()):
            raise msgspec.ValidationError("ecc.return_movement_type: a movement type (651)")
        _positive("ecc.sales_order_wait_seconds", self.sales_order_wait_seconds)
        if set(self.sales_functions) != set(default_sales_functions()):
            raise msgspec.ValidationError(
                f"ecc.sales_functions needs exactly {sorted(default_sales_functions())}"
            )
        for kind, name in self.sales_functions.items():
            if not name or not all(c.isalnum() or c in "_/" for c in name) or len(name) > 30:
                raise msgspec.ValidationError(f"ecc.sales_functions.{kind}: {name!r}")
        for message in (*self.sales_lock_messages, *self.duplicate_po_messages):
            if len(message.split()) != 2:
                raise msgspec.ValidationError(f'ecc messages are "CLASS NUMBER", not {message!r}')


class SpApiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    endpoint: str = "https://sellingpartnerapi-eu.amazon.com"
    lwa_endpoint: str = "https://api.amazon.com/auth/o2/token"
    client_id: str | None = None
    client_secret: Secret | None = None
    refresh_token: Secret | None = None
    rate_per_second: float = 2.0
    burst: int = 10
    #: Draw from one bucket in PostgreSQL shared by every replica (the plan is per seller
    #: account); false: each process paces itself at the full rate.
    shared_rate_limit: bool = True

    def __post_init__(self) -> None:
        _http_url("spapi.endpoint", self.endpoint)
        _http_url("spapi.lwa_endpoint", self.lwa_endpoint)
        _positive("spapi.rate_per_second", self.rate_per_second)
        _at_least("spapi.burst", self.burst, 1)


class SekoSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Seko Logistics iHub (3PL): REST calls out (``url``/``service``/``version``/...
    ``?api_key=``), push callbacks in (``webhook_token``, ``allow_sources``)."""

    url: str = "https://ihubuat.supplystream.com:8081/api"
    api_key: Secret | None = None  # travels in the query string: never log a URL unredacted
    timeout_seconds: float = 30.0
    #: ERP warehouse code -> Seko DC code (``DCCode``): the warehouses Seko fulfils, 1:1.
    facilities: dict[str, str] = {}
    #: The per-integration secret Seko sends with every push (compared in constant time).
    webhook_token: Secret | None = None
    #: Addresses or networks pushes may come from (``203.0.113.0/24``); empty: any.
    allow_sources: list[str] = []

    def __post_init__(self) -> None:
        _http_url("seko.url", self.url)
        _positive("seko.timeout_seconds", self.timeout_seconds)
        warehouse_of: dict[str, str] = {}
        for warehouse, dc in self.facilities.items():
            _non_empty("seko.facilities", warehouse)
            _non_empty(f"seko.facilities.{warehouse}", dc)
            if dc.upper() in warehouse_of:
                raise SettingsError(
                    "seko.facilities",
                    f"warehouses {warehouse_of[dc.upper()]!r} and {warehouse!r} both map to "
                    f"DC {dc!r}; the mapping must be one-to-one",
                )
            warehouse_of[dc.upper()] = warehouse
        for source in self.allow_sources:
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                raise SettingsError(
                    "seko.allow_sources", f"not an address or network: {source!r}"
                ) from None


class StockSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    window_seconds: float = 60.0
    window_max_lines: int = 500
    #: A posting refused as locked / unavailable waits 1 s, then doubling (jittered) up to this.
    retry_max_seconds: float = 120.0
    #: A posting answered with a collision (b1.collision_codes) and whose document is not in
    #: the ERP is retried (same backoff) this many times in a row, then refused: one
    #: erp_rejected exception for all its movements.
    collision_retries: int = 8

    def __post_init__(self) -> None:
        _positive("stock.window_seconds", self.window_seconds)
        _at_least("stock.window_max_lines", self.window_max_lines, 1)
        _at_least("stock.retry_max_seconds", self.retry_max_seconds, 1)
        _at_least("stock.collision_retries", self.collision_retries, 0)


class DispatchSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    at_risk_seconds: float = 7200.0
    #: Runners reserved for the urgent class (dispatch confirmations), beside [engine]'s.
    max_in_flight: int = 32
    #: The urgent class's own consumer group (its own fetch path); default "<kafka.group>.urgent".
    group: str | None = None

    def __post_init__(self) -> None:
        _positive("dispatch.at_risk_seconds", self.at_risk_seconds)
        _at_least("dispatch.max_in_flight", self.max_in_flight, 1)


class OrdersSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[orders]``: Amazon orders into the ERP and back (order capture, sales orders, holds,
    deliveries, invoices, returns)."""

    #: Poll SP-API searchOrders (Orders v2026-01-01) for new and changed orders and publish
    #: them to topics.orders; one poller is active per seller account across replicas.
    capture: bool = False
    #: The seller account the poller works for (its cursor and its leadership are per seller).
    seller_id: str = "default"
    #: searchOrders' marketplaceIds (at most 50); empty: every marketplace of the account.
    marketplace_ids: list[str] = []
    #: How often the poller asks for orders updated since its cursor (searchOrders' usage
    #: plan is 0.0056 requests/s, burst 20: about one call per 3 minutes once the burst is
    #: spent; each page of a search is one call).
    capture_poll_seconds: float = 180.0
    capture_page_size: int = 100
    #: On the very first start, orders updated this far back are read.
    capture_lookback_seconds: float = 86400.0
    #: searchOrders' usage plan, as the account has it (Amazon may grant more).
    capture_rate_per_second: float = 0.0056
    capture_burst: int = 20
    #: Each search reads again this far before its cursor: an order can appear in the search
    #: with a last-update time already in the past [unconfirmed: eventual consistency of the
    #: search index]; reading twice is harmless (the revision check).
    capture_overlap_seconds: float = 600.0
    #: A search ends this long before now: the model's "at least two minutes before the
    #: request" for lastUpdatedBefore, and 10 s of clock skew.
    capture_settle_seconds: float = 130.0
    #: The ERP customer (B1 business partner, ECC sold-to) of each marketplace's anonymised
    #: buyers; "*" is the fallback for marketplaces not listed.
    default_customers: dict[str, str] = {}
    #: The marketplace's tax classification of a line → the ERP tax code; "*" is the code for
    #: lines without one. A line whose classification is not mapped is an order exception.
    tax_codes: dict[str, str] = {}
    #: The location (as in mappings.warehouses) that ships an order naming none.
    default_warehouse: str = ""
    #: Orders per ERP round trip when creating (where the ERP takes several at once), and
    #: how many round trips at once.
    batch_max_orders: int = 50
    max_concurrent_writes: int = 4
    #: How often the ERP status (holds, approval, blocks) of open orders is read.
    watch_seconds: float = 30.0
    #: Create the invoice right after each delivery (the ERP invoices on dispatch).
    invoice_on_dispatch: bool = True
    #: Deliveries, invoices and returns are posted in windows like stock postings.
    window_seconds: float = 10.0
    retry_max_seconds: float = 120.0
    #: Where returned goods go, by condition: a location of mappings.warehouses; "" for a
    #: condition: back into the location the return was received at.
    return_locations: dict[str, str] = {}
    #: Credit returned goods that were invoiced with a credit note based on the return, where
    #: the return itself does not credit them (SAP B1 takes invoiced goods back with a credit
    #: note based on the invoice, which restocks and credits in one: nothing follows there).
    credit_note_on_return: bool = True

    def __post_init__(self) -> None:
        _non_empty("orders.seller_id", self.seller_id)
        if len(self.marketplace_ids) > 50:
            raise SettingsError("orders.marketplace_ids", "at most 50 (searchOrders' limit)")
        _positive("orders.capture_poll_seconds", self.capture_poll_seconds)
        if not 1 <= self.capture_page_size <= 100:
            raise SettingsError("orders.capture_page_size", "must be between 1 and 100")
        _positive("orders.capture_lookback_seconds", self.capture_lookback_seconds)
        _positive("orders.capture_rate_per_second", self.capture_rate_per_second)
        _at_least("orders.capture_burst", self.capture_burst, 1)
        _at_least("orders.capture_overlap_seconds", self.capture_overlap_seconds, 0)
        _at_least("orders.capture_settle_seconds", self.capture_settle_seconds, 120)
        _at_least("orders.batch_max_orders", self.batch_max_orders, 1)
        _at_least("orders.max_concurrent_writes", self.max_concurrent_writes, 1)
        _positive("orders.watch_seconds", self.watch_seconds)
        _positive("orders.window_seconds", self.window_seconds)
        _at_least("orders.retry_max_seconds", self.retry_max_seconds, 1)
        for condition in self.return_locations:
            if condition not in ("sellable", "damaged"):
                raise SettingsError(
                    f"orders.return_locations.{condition}", "a condition: sellable or damaged"
                )

    def customer_for(self, marketplace_id: str) -> str | None:
        return self.default_customers.get(marketplace_id) or self.default_customers.get("*")


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
    #: Runners of the normal class (the urgent class has dispatch.max_in_flight). A runner
    #: waits while its event's row is group-committed, so this bounds the rows in flight: 1024
    #: keeps two batches of database.batch_max_rows overlapping (256 left the second empty).
    max_in_flight: int = 1024
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
    #: Beside the urgent class in one process, the normal class's share of one event-loop
    #: iteration (seconds; 0: no slicing). See worker/slicing.py.
    loop_slice_seconds: float = 0.001

    def __post_init__(self) -> None:
        if not (0 <= self.loop_slice_seconds <= 1):
            raise SettingsError("engine.loop_slice_seconds", "must be from 0 to 1 (0: off)")
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
    erp: ErpSettings = msgspec.field(default_factory=ErpSettings)
    b1: B1Settings = msgspec.field(default_factory=B1Settings)
    ecc: EccSettings = msgspec.field(default_factory=EccSettings)
    spapi: SpApiSettings = msgspec.field(default_factory=SpApiSettings)
    seko: SekoSettings = msgspec.field(default_factory=SekoSettings)
    stock: StockSettings = msgspec.field(default_factory=StockSettings)
    dispatch: DispatchSettings = msgspec.field(default_factory=DispatchSettings)
    orders: OrdersSettings = msgspec.field(default_factory=OrdersSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)


def load_settings(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from `path` (else `$SKUFLOW_CONFIG`, else defaults) plus `env` overrides."""
    return load_struct(Settings, path, env)
