from typing import Annotated

import msgspec
import pytest
from servicekit.settings import HttpUrl, KafkaServers, PostgresUrl, RedisUrl, SettingsError, from_env
from servicekit.settings import ServiceSettings as KitSettings
from servicekit.telemetry import sampler


class StackSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The four servers' URLs, as a service's settings declare them."""

    database_url: PostgresUrl
    redis_url: RedisUrl
    kafka_bootstrap_servers: KafkaServers
    search_url: HttpUrl


STACK = {
    "DATABASE_URL": "postgresql://suite:suite@127.0.0.1:55432/suite",
    "REDIS_URL": "redis://127.0.0.1:56379/0",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:59092",
    "SEARCH_URL": "http://127.0.0.1:59200",
}


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: PostgresUrl
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    debug: bool = False


def test_reads_each_field_from_the_variable_of_its_name() -> None:
    settings = from_env(StackSettings, STACK)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:59092"
    assert settings.search_url == "http://127.0.0.1:59200"


def test_converts_text_to_the_declared_types_and_keeps_defaults() -> None:
    settings = from_env(
        ServiceSettings, {"DATABASE_URL": STACK["DATABASE_URL"], "POOL_SIZE": "25", "DEBUG": "true"}
    )
    assert (settings.pool_size, settings.debug) == (25, True)
    assert from_env(ServiceSettings, {"DATABASE_URL": STACK["DATABASE_URL"]}).pool_size == 10


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL, KAFKA_BOOTSTRAP_SERVERS"):
        from_env(StackSettings, {"DATABASE_URL": STACK["DATABASE_URL"], "SEARCH_URL": STACK["SEARCH_URL"]})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/x"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka://127.0.0.1:9092"),
        ("SEARCH_URL", "127.0.0.1:9200"),
    ],
)
def test_malformed_urls_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        from_env(StackSettings, {**STACK, variable: value})


def test_out_of_range_and_mistyped_values_name_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^POOL_SIZE: Expected `int` >= 1"):
        from_env(ServiceSettings, {"DATABASE_URL": STACK["DATABASE_URL"], "POOL_SIZE": "0"})
    with pytest.raises(SettingsError, match=r"^POOL_SIZE: Expected `int`"):
        from_env(ServiceSettings, {"DATABASE_URL": STACK["DATABASE_URL"], "POOL_SIZE": "many"})


class PrefixedSettings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: PostgresUrl
    port: int = 8000
    relay_checkpoint: str = "relay"


def test_a_prefixed_variable_wins_over_the_plain_one() -> None:
    env = {"DATABASE_URL": STACK["DATABASE_URL"], "PORT": "9000", "RELAY_PORT": "9100"}
    settings = from_env(PrefixedSettings, env, prefix="RELAY_")
    assert settings.port == 9100
    assert from_env(PrefixedSettings, {**env, "RELAY_PORT": ""} | {}, prefix="OTHER_").port == 9000


def test_a_field_already_named_with_the_prefix_is_not_prefixed_twice() -> None:
    env = {"DATABASE_URL": STACK["DATABASE_URL"], "RELAY_CHECKPOINT": "mine"}
    assert from_env(PrefixedSettings, env, prefix="RELAY_").relay_checkpoint == "mine"


def test_an_error_names_the_variable_that_was_read() -> None:
    env = {"DATABASE_URL": STACK["DATABASE_URL"], "RELAY_PORT": "eighty"}
    with pytest.raises(SettingsError, match=r"^RELAY_PORT: "):
        from_env(PrefixedSettings, env, prefix="RELAY_")


def test_a_missing_prefixed_variable_names_both_spellings() -> None:
    with pytest.raises(SettingsError, match=r"RELAY_DATABASE_URL \(or DATABASE_URL\)"):
        from_env(PrefixedSettings, {}, prefix="RELAY_")


def test_trace_sampling_is_read_from_the_standard_opentelemetry_variables() -> None:
    assert (KitSettings().otel_traces_sampler, KitSettings().otel_traces_sampler_arg) == (
        "parentbased_always_on",
        1.0,
    )
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    settings = from_env(KitSettings, env, prefix="QUERY_")
    name, ratio = settings.otel_traces_sampler, settings.otel_traces_sampler_arg
    assert (name, ratio) == ("parentbased_traceidratio", 0.25)
    description = sampler(name, ratio).get_description()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_SAMPLER_ARG", "half"),
    ],
)
def test_a_sampler_the_kit_cannot_build_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        from_env(KitSettings, {variable: value})
