"""Settings: TOML schema, environment overrides, secrets and the SKU map."""

import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config.settings import (
    DEFAULTS_PATH,
    ENV_OVERRIDES,
    EngineSettings,
    KafkaSettings,
    MappingsSettings,
    Secret,
    Settings,
    SettingsError,
    enc_hook,
    load_settings,
    load_sku_map,
    redact_url,
    redacted_dict,
)

EXAMPLE_SKU_MAP = DEFAULTS_PATH.with_name("sku-map.example.csv")


def write(tmp_path: Path, text: str, name: str = "skuflow.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env or {})
    return str(caught.value)


SASL_SSL_ENV = {
    "SKUFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "SKUFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "SKUFLOW_KAFKA_SASL_USERNAME": "skuflow",
}


def secret_env(secret: str) -> dict[str, str]:
    """Every secret-bearing variable set from one secret value."""
    return {
        **SASL_SSL_ENV,
        "SKUFLOW_KAFKA_SASL_PASSWORD": secret,
        "SKUFLOW_DATABASE_URL": f"postgresql://skuflow:{secret}@db:5432/skuflow",
        "SKUFLOW_B1_PASSWORD": secret,
        "SKUFLOW_LWA_CLIENT_SECRET": secret,
        "SKUFLOW_LWA_REFRESH_TOKEN": secret,
    }


# --- defaults and TOML ---


@pytest.mark.timeout(5)
def test_no_file_and_no_environment_gives_the_documented_defaults() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.kafka.group == "skuflow"
    assert settings.topics.dispatch == "wms.dispatch-confirmations"
    assert settings.topics.stock == "wms.stock-adjustments"
    assert settings.topics.dead_letter == "skuflow.dead-letter"
    assert settings.stock.window_seconds == 60
    assert settings.stock.window_max_lines == 500
    assert settings.dispatch.at_risk_seconds == 7200
    assert settings.health.port == 8080
    assert settings.spapi.rate_per_second == 2.0
    assert settings.spapi.burst == 10
    assert settings.engine.max_buffered_bytes == 64 * 1024 * 1024
    assert settings.mappings.warehouses == {}
    assert settings.mappings.sku_map is None


@pytest.mark.timeout(5)
def test_an_empty_file_is_valid(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), {}) == Settings()


@pytest.mark.timeout(5)
def test_shipped_defaults_file_equals_no_file() -> None:
    assert load_settings(DEFAULTS_PATH, {}) == load_settings(None, {})


@pytest.mark.timeout(5)
def test_shipped_defaults_file_lists_every_key() -> None:
    text = DEFAULTS_PATH.read_text(encoding="utf-8")
    tables = re.split(r"^\[([a-z0-9_.]+)\][^\n]*$", text, flags=re.MULTILINE)
    bodies = dict(zip(tables[1::2], tables[2::2], strict=True))
    for table in msgspec.structs.fields(Settings):
        for key in msgspec.structs.fields(table.type):
            if key.name == "warehouses":
                assert "mappings.warehouses" in bodies
                continue
            line = rf"^#? ?{key.name} = "
            assert re.search(line, bodies[table.name], flags=re.MULTILINE), (
                f"{table.name}.{key.name} is missing from defaults.toml"
            )


@pytest.mark.timeout(5)
def test_toml_values_are_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [kafka]
        bootstrap = "k1:9092,k2:9093"
        [engine]
        max_in_flight = 64
        resume_ratio = 0.25
        [stock]
        window_seconds = 5
        [mappings]
        sku_map = "maps/sku.csv"
        [mappings.warehouses]
        "LOC-01" = "01"
        "LOC-02" = "02"
        """,
    )
    settings = load_settings(path, {})
    assert settings.kafka.bootstrap == "k1:9092,k2:9093"
    assert settings.engine.max_in_flight == 64
    assert settings.engine.resume_ratio == 0.25
    assert settings.stock.window_seconds == 5.0
    assert settings.mappings.sku_map == Path("maps/sku.csv")
    assert settings.mappings.warehouses == {"LOC-01": "01", "LOC-02": "02"}
    assert settings.engine.max_attempts == 10  # untouched keys keep their defaults


@pytest.mark.timeout(5)
def test_config_path_comes_from_skuflow_config_when_not_given(tmp_path: Path) -> None:
    path = write(tmp_path, "[health]\nport = 9100\n")
    assert load_settings(None, {"SKUFLOW_CONFIG": str(path)}).health.port == 9100


@pytest.mark.timeout(5)
def test_explicit_path_wins_over_skuflow_config(tmp_path: Path) -> None:
    chosen = write(tmp_path, "[health]\nport = 9100\n", "chosen.toml")
    env = {"SKUFLOW_CONFIG": str(tmp_path / "absent.toml")}
    assert load_settings(chosen, env).health.port == 9100


@pytest.mark.timeout(5)
def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert load_error(path) == f"{path}: settings file not found"


@pytest.mark.timeout(5)
def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "[engine]\nmax_in_flight = \n"))
    assert message.startswith(f"{tmp_path / 'skuflow.toml'}: invalid TOML")
    assert "line 2, column" in message


# --- errors name the dotted key ---


@pytest.mark.timeout(5)
def test_unknown_key_names_the_dotted_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "[engine]\nmax_in_fligth = 3\n"))
    assert message.startswith("engine.max_in_fligth: unknown key")
    assert "max_in_flight" in message  # suggests the likely intended key


@pytest.mark.timeout(5)
def test_unknown_table_names_the_table(tmp_path: Path) -> None:
    assert load_error(write(tmp_path, "[enigne]\nx = 1\n")).startswith("enigne: unknown key")


@pytest.mark.timeout(5)
def test_unknown_key_in_mappings_is_an_error_but_warehouses_accepts_any_location(
    tmp_path: Path,
) -> None:
    assert load_error(write(tmp_path, "[mappings]\nsku_mapp = 'x'\n")).startswith(
        "mappings.sku_mapp: unknown key"
    )
    anything = write(tmp_path, "[mappings.warehouses]\n'any location at all' = '07'\n", "ok.toml")
    assert load_settings(anything, {}).mappings.warehouses == {"any location at all": "07"}


@pytest.mark.timeout(5)
def test_wrong_type_names_the_dotted_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '[engine]\nmax_in_flight = "many"\n'))
    assert message == "engine.max_in_flight: expected `int`, got `str`"


@pytest.mark.timeout(5)
def test_wrong_type_of_warehouse_code_names_the_mapping(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "[mappings.warehouses]\n'LOC-01' = 1\n"))
    assert message == "mappings.warehouses: expected `str`, got `int`"


@pytest.mark.timeout(5)
def test_a_table_given_as_a_value_names_the_table(tmp_path: Path) -> None:
    assert load_error(write(tmp_path, "engine = 3\n")) == "engine: expected a table, got `int`"


@pytest.mark.timeout(5)
def test_invalid_choice_lists_the_allowed_values(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, '[log]\nlevel = "debug"\n'))
    assert message.startswith("log.level: invalid enum value 'debug'")
    assert "'DEBUG'" in message


@pytest.mark.timeout(5)
def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "[engine]\nmax_in_flight = 0\n"))
    assert message == "engine.max_in_flight: must be >= 1"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[engine]\nresume_ratio = 1.0", "engine.resume_ratio"),
        ("[engine]\nresume_ratio = 0", "engine.resume_ratio"),
        ("[engine]\ndrain_timeout_seconds = nan", "engine.drain_timeout_seconds"),
        ("[engine]\nretry_max_seconds = 0.1", "engine.retry_max_seconds"),
        ("[health]\nport = 70000", "health.port"),
        ("[kafka]\nbootstrap = ''", "kafka.bootstrap"),
        ("[kafka]\nbootstrap = 'broker-without-port'", "kafka.bootstrap"),
        ("[database]\nurl = 'mysql://u@h/db'", "database.url"),
        ("[database]\nmax_pool = 0", "database.max_pool"),
        ("[b1]\nurl = 'host:50000'", "b1.url"),
        ("[topics]\nstock = 'wms.dispatch-confirmations'", "topics.stock"),
        ("[topics]\ndead_letter = 'bad topic'", "topics.dead_letter"),
        ("[stock]\nwindow_seconds = -1", "stock.window_seconds"),
        ("[spapi]\nrate_per_second = 0", "spapi.rate_per_second"),
        ("[kafka]\ngroup_instance_id = 'pod 0'", "kafka.group_instance_id"),
        ("[kafka]\ngroup_instance_id = '" + "p" * 243 + "'", "kafka.group_instance_id"),
        ("[kafka]\nheartbeat_interval_ms = 15000", "kafka.heartbeat_interval_ms"),
        ("[kafka]\nrebalance_timeout_ms = 0", "kafka.rebalance_timeout_ms"),
        ("[kafka]\nmetadata_refresh_seconds = 0", "kafka.metadata_refresh_seconds"),
    ],
)
@pytest.mark.timeout(5)
def test_each_range_check_names_its_key(tmp_path: Path, toml: str, key: str) -> None:
    assert load_error(write(tmp_path, toml)).startswith(f"{key}: ")


@pytest.mark.timeout(5)
def test_range_checks_also_apply_when_constructed_in_code() -> None:
    with pytest.raises(SettingsError, match=r"^engine\.max_in_flight: must be >= 1$"):
        EngineSettings(max_in_flight=0)


@pytest.mark.timeout(5)
def test_error_messages_never_echo_a_database_url(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "[database]\nurl = 'mysql://u:hunter2@h/db'\n"))
    assert "hunter2" not in message


# --- warehouses ---


@pytest.mark.timeout(5)
def test_two_locations_mapping_to_one_erp_warehouse_is_an_error_naming_both() -> None:
    with pytest.raises(SettingsError) as caught:
        MappingsSettings(warehouses={"LOC-01": "01", "LOC-02": "01"})
    assert caught.value.key == "mappings.warehouses"
    assert "'LOC-01'" in str(caught.value)
    assert "'LOC-02'" in str(caught.value)


@pytest.mark.timeout(5)
def test_blank_erp_warehouse_code_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"^mappings\.warehouses\.LOC-01: must not be empty"):
        MappingsSettings(warehouses={"LOC-01": " "})


# --- Kafka security ---


@pytest.mark.timeout(5)
def test_plain_sasl_over_plaintext_is_refused() -> None:
    env = {
        "SKUFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SKUFLOW_KAFKA_SASL_MECHANISM": "PLAIN",
        "SKUFLOW_KAFKA_SASL_USERNAME": "u",
        "SKUFLOW_KAFKA_SASL_PASSWORD": "hunter2",
    }
    message = load_error(env=env)
    assert message.startswith("kafka.security_protocol: ")
    assert "allow_insecure_sasl" in message
    assert "hunter2" not in message


@pytest.mark.timeout(5)
def test_plain_sasl_over_plaintext_is_allowed_when_opted_in() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=Secret("p"),
        allow_insecure_sasl=True,
    )
    assert kafka.sasl_mechanism == "PLAIN"


@pytest.mark.timeout(5)
def test_scram_over_sasl_plaintext_needs_no_opt_in() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password=Secret("p"),
    )
    assert kafka.security_protocol == "SASL_PLAINTEXT"


@pytest.mark.timeout(5)
def test_sasl_protocol_requires_credentials() -> None:
    with pytest.raises(SettingsError, match=r"^kafka\.sasl_password: required"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u")


@pytest.mark.timeout(5)
def test_sasl_credentials_without_a_sasl_protocol_are_an_error() -> None:
    with pytest.raises(SettingsError, match=r"^kafka\.sasl_mechanism: set, but"):
        KafkaSettings(sasl_mechanism="PLAIN")


@pytest.mark.timeout(5)
def test_ca_file_without_tls_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"^kafka\.ssl_cafile: "):
        KafkaSettings(ssl_cafile=Path("/etc/ca.pem"))
    assert KafkaSettings(security_protocol="SSL", ssl_cafile=Path("/ca.pem")).ssl_cafile


# --- environment overrides ---


@pytest.mark.timeout(5)
def test_every_contract_variable_overrides_its_key(tmp_path: Path) -> None:
    env = {
        **SASL_SSL_ENV,
        "SKUFLOW_KAFKA_BOOTSTRAP": "k:9092",
        "SKUFLOW_KAFKA_GROUP": "g",
        "SKUFLOW_KAFKA_SASL_PASSWORD": "kp",
        "SKUFLOW_KAFKA_SSL_CAFILE": "/ca.pem",
        "SKUFLOW_DATABASE_URL": "postgresql://u:dp@db/x",
        "SKUFLOW_B1_URL": "https://b1:50000/b1s/v1",
        "SKUFLOW_B1_COMPANY": "C",
        "SKUFLOW_B1_USER": "U",
        "SKUFLOW_B1_PASSWORD": "bp",
        "SKUFLOW_SPAPI_ENDPOINT": "https://sp.example",
        "SKUFLOW_LWA_ENDPOINT": "https://lwa.example/token",
        "SKUFLOW_LWA_CLIENT_ID": "cid",
        "SKUFLOW_LWA_CLIENT_SECRET": "cs",
        "SKUFLOW_LWA_REFRESH_TOKEN": "rt",
        "SKUFLOW_HEALTH_PORT": "9999",
        "SKUFLOW_LOG_FORMAT": "console",
    }
    assert set(env) == set(ENV_OVERRIDES)
    file = write(tmp_path, "[kafka]\nbootstrap = 'from-file:9092'\n")
    s = load_settings(file, env)
    assert (s.kafka.bootstrap, s.kafka.group, s.kafka.security_protocol) == (
        "k:9092",
        "g",
        "SASL_SSL",
    )
    assert (s.kafka.sasl_mechanism, s.kafka.sasl_username) == ("SCRAM-SHA-512", "skuflow")
    assert s.kafka.sasl_password == Secret("kp")
    assert s.kafka.ssl_cafile == Path("/ca.pem")
    assert s.database.url.reveal() == "postgresql://u:dp@db/x"
    assert (s.b1.url, s.b1.company, s.b1.user) == ("https://b1:50000/b1s/v1", "C", "U")
    assert s.b1.password == Secret("bp")
    assert (s.spapi.endpoint, s.spapi.lwa_endpoint) == (
        "https://sp.example",
        "https://lwa.example/token",
    )
    assert s.spapi.client_id == "cid"
    assert s.spapi.client_secret == Secret("cs")
    assert s.spapi.refresh_token == Secret("rt")
    assert s.health.port == 9999
    assert s.log.format == "console"


@pytest.mark.timeout(5)
def test_generic_variable_overrides_any_scalar_key() -> None:
    env = {
        "SKUFLOW_ENGINE__MAX_IN_FLIGHT": "64",
        "SKUFLOW_ENGINE__RESUME_RATIO": "0.75",
        "SKUFLOW_B1__VERIFY_TLS": "false",
        "SKUFLOW_LOG__LEVEL": "DEBUG",
        "SKUFLOW_MAPPINGS__SKU_MAP": "maps/sku.csv",
    }
    settings = load_settings(None, env)
    assert settings.engine.max_in_flight == 64
    assert settings.engine.resume_ratio == 0.75
    assert settings.b1.verify_tls is False
    assert settings.log.level == "DEBUG"
    assert settings.mappings.sku_map == Path("maps/sku.csv")


@pytest.mark.timeout(5)
def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine]\nmax_in_flight = 8\n")
    assert load_settings(path, {"SKUFLOW_ENGINE__MAX_IN_FLIGHT": "16"}).engine.max_in_flight == 16


@pytest.mark.timeout(5)
def test_unparseable_variable_names_key_and_variable() -> None:
    message = load_error(env={"SKUFLOW_ENGINE__MAX_IN_FLIGHT": "lots"})
    assert message.startswith("engine.max_in_flight: expected `int`")
    assert "SKUFLOW_ENGINE__MAX_IN_FLIGHT" in message


@pytest.mark.timeout(5)
def test_unknown_generic_variable_is_an_error() -> None:
    message = load_error(env={"SKUFLOW_ENGINE__MAX_IN_FLIGTH": "3"})
    assert message.startswith("engine.max_in_fligth: unknown key")
    assert "SKUFLOW_ENGINE__MAX_IN_FLIGTH" in message


@pytest.mark.timeout(5)
def test_a_table_cannot_be_set_from_one_variable() -> None:
    assert load_error(env={"SKUFLOW_MAPPINGS__WAREHOUSES": "x"}).startswith("mappings.warehouses: ")


@pytest.mark.timeout(5)
def test_variables_outside_the_scheme_are_ignored() -> None:
    env = {"SKUFLOW_SERVICE_HOST": "10.0.0.1", "SKUFLOW_PORT": "tcp://10.0.0.1:80", "HOME": "/"}
    assert load_settings(None, env) == Settings()


@pytest.mark.timeout(5)
def test_empty_variable_unsets_an_optional_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[spapi]\nclient_id = 'from-file'\n")
    assert load_settings(path, {"SKUFLOW_LWA_CLIENT_ID": ""}).spapi.client_id is None


@pytest.mark.timeout(5)
def test_two_variables_disagreeing_on_one_key_is_an_error() -> None:
    env = {"SKUFLOW_HEALTH_PORT": "9000", "SKUFLOW_HEALTH__PORT": "9001"}
    message = load_error(env=env)
    assert message.startswith("health.port: set by both")


# --- secrets ---


@pytest.mark.timeout(5)
def test_secret_prints_as_stars_and_reveals_its_value() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == "***"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("hunter3")
    assert hash(secret) == hash(Secret("hunter2"))


@pytest.mark.timeout(5)
def test_secrets_never_appear_in_repr_or_str_of_settings_or_sections() -> None:
    settings = load_settings(None, secret_env("hunter2"))
    assert settings.b1.password == Secret("hunter2")
    for shown in (settings, *(getattr(settings, t.name) for t in msgspec.structs.fields(Settings))):
        assert "hunter2" not in repr(shown)
        assert "hunter2" not in str(shown)


@pytest.mark.timeout(5)
def test_secrets_and_url_passwords_never_appear_in_redacted_dict() -> None:
    env = {**secret_env("hunter2"), "SKUFLOW_B1_URL": "https://svc:hunter2@b1:50000/b1s/v1"}
    shown = redacted_dict(load_settings(None, env))
    assert "hunter2" not in repr(shown)
    assert shown["b1"]["password"] == "***"
    assert shown["database"]["url"] == "***"
    assert shown["b1"]["url"] == "https://svc:***@b1:50000/b1s/v1"


@pytest.mark.timeout(5)
def test_redacted_dict_is_plain_json_ready_builtins() -> None:
    settings = load_settings(None, {"SKUFLOW_MAPPINGS__SKU_MAP": "maps/sku.csv"})
    shown = redacted_dict(settings)
    assert shown["mappings"]["sku_map"] == "maps/sku.csv"
    assert msgspec.json.decode(msgspec.json.encode(shown)) == shown


@pytest.mark.timeout(5)
def test_msgspec_encoding_writes_stars_and_fails_closed_without_the_hook() -> None:
    settings = load_settings(None, secret_env("hunter2"))
    encoded = msgspec.json.encode(settings, enc_hook=enc_hook)
    assert b"hunter2" not in encoded
    assert msgspec.json.decode(encoded)["kafka"]["sasl_password"] == "***"
    with pytest.raises(TypeError) as caught:
        msgspec.json.encode(settings)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://h/db?user=u&password=pw", "postgresql://h/db?user=u&password=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("https://b1:50000/b1s/v1", "https://b1:50000/b1s/v1"),
    ],
)
@pytest.mark.timeout(5)
def test_redact_url_masks_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.timeout(5)
@hypothesis_settings(max_examples=50, deadline=None, database=None)
@given(secret=st.text(min_size=1, max_size=40))
def test_arbitrary_secrets_never_change_what_settings_show(secret: str) -> None:
    baseline = load_settings(None, secret_env("x"))
    settings = load_settings(None, secret_env(secret))
    assert settings.b1.password == Secret(secret)
    assert repr(settings) == repr(baseline)
    assert redacted_dict(settings) == redacted_dict(baseline)
    assert msgspec.json.encode(settings, enc_hook=enc_hook) == msgspec.json.encode(
        baseline, enc_hook=enc_hook
    )


# --- SKU map ---


def write_csv(tmp_path: Path, text: str) -> Path:
    return write(tmp_path, text, "sku-map.csv")


@pytest.mark.timeout(5)
def test_example_sku_map_loads() -> None:
    assert load_sku_map(EXAMPLE_SKU_MAP) == {"ABC-123": "A00001", "XYZ-789": "A00002"}


@pytest.mark.timeout(5)
def test_sku_map_skips_blank_lines_and_trims_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sku,item_code\n ABC-1 , I1 \n\nABC-2,I2\n")
    assert load_sku_map(path) == {"ABC-1": "I1", "ABC-2": "I2"}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("sku,item_code\nA,1\nB,2\nA,3\n", 4, "duplicate sku 'A' (first on line 2)"),
        ("sku,item_code\nA,1\nB,\n", 3, "blank item_code for sku 'B'"),
        ("sku,item_code\n,1\n", 2, "blank sku"),
        ("sku,item_code\nA,1,extra\n", 2, "expected 2 columns, got 3"),
        ("item,code\nA,1\n", 1, "expected the header 'sku,item_code'"),
        ("", 1, "expected the header 'sku,item_code'"),
    ],
)
@pytest.mark.timeout(5)
def test_sku_map_errors_name_the_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write_csv(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_sku_map(path)
    assert str(caught.value) == f"{path}:{line}: {problem}"


@pytest.mark.timeout(5)
def test_missing_sku_map_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SKU map file not found"):
        load_sku_map(tmp_path / "absent.csv")


def test_echoed_credentials_are_redacted_in_every_form_a_server_sends_them_back() -> None:
    from urllib.parse import quote, quote_plus

    from config.redaction import redact_secrets

    secret = 'cnry+/="\\x'
    echoed = (
        f"raw {secret}; form {quote_plus(secret)}; url {quote(secret, safe='')}; "
        'json "cnry+/=\\"\\\\x"; basic ' + __import__("base64").b64encode(secret.encode()).decode()
    )
    redacted = redact_secrets(echoed, secret, None, "")
    assert "cnry" not in redacted, redacted
    assert redacted.count("***") == 5
    assert redact_secrets("a b a", "a") == "*** b ***"  # the raw form, however short


def test_the_normal_class_has_runners_for_every_group_commit_batch_in_flight() -> None:
    # A stock runner waits while its row is group-committed: fewer runners than
    # batches_in_flight x batch_max_rows leave a batch slot empty (batches never overlap).
    defaults = Settings()
    database = defaults.database
    assert defaults.engine.max_in_flight >= database.batches_in_flight * database.batch_max_rows
