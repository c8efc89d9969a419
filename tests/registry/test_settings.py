"""The ``schema_registry`` settings block: where it comes from and what it never shows."""

from __future__ import annotations

import pytest

from driftline.config.settings import SchemaRegistry, Settings
from driftline.errors import ConfigError
from driftline.streams.monitor.codec import decode_inputs
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import RegistryDecoder


def test_the_block_comes_from_the_environment_and_masks_the_password(monkeypatch) -> None:
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY__URL", "https://sr.example:8081/")
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY__BASIC_AUTH_USER", "svc")
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY__BASIC_AUTH_PASSWORD", "s3cret-pw")
    settings = Settings.load(pipeline="reg")
    block = settings.schema_registry
    assert block.url == "https://sr.example:8081"
    assert block.client_config()["basic.auth.user.info"] == "svc:s3cret-pw"
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings)


def test_the_block_comes_from_the_config_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DRIFTLINE_SCHEMA_REGISTRY__URL", raising=False)
    file = tmp_path / "driftline.toml"
    file.write_text('[schema_registry]\nurl = "http://127.0.0.1:8081"\ncache_schemas = 5\n')
    block = Settings.load(file, pipeline="reg").schema_registry
    assert block.url == "http://127.0.0.1:8081" and block.cache_schemas == 5


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"url": "http://user:pw-in-url@sr:8081"}, "basic_auth_user"),
        ({"url": "file:///etc/passwd"}, "http"),
        ({"url": "http://sr", "basic_auth_user": "svc"}, "go together"),
        ({"basic_auth_user": "svc", "basic_auth_password": "pw-in-url"}, "without a url"),
    ],
)
def test_bad_blocks_stop_with_one_line_that_echoes_no_secret(monkeypatch, fields, says) -> None:
    for key, value in fields.items():
        monkeypatch.setenv(f"DRIFTLINE_SCHEMA_REGISTRY__{key.upper()}", value)
    with pytest.raises(ConfigError) as caught:
        Settings.load(pipeline="reg")
    message = str(caught.value)
    assert says in message and "pw-in-url" not in message and "\n" not in message


def test_no_url_means_no_decoder_and_a_clear_error_for_commands() -> None:
    assert RegistryDecoder.from_settings(SchemaRegistry()) is None
    with pytest.raises(ConfigError, match="DRIFTLINE_SCHEMA_REGISTRY__URL"):
        SchemaRegistry().client_config()


def test_the_schema_cache_is_capped(client, registry_url, counting_client) -> None:
    import json

    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from tests.registry.test_wire_format import EVENT_AVRO, event

    settings = SchemaRegistry(url=registry_url, cache_schemas=2)
    values = []
    for k in range(3):  # three schemas, three ids
        schema = {**EVENT_AVRO, "name": f"Capped{k}"}
        ctx = SerializationContext(f"cap-{k}.inputs", MessageField.VALUE)
        values.append(AvroSerializer(client, json.dumps(schema))(event(k), ctx))
    counting = counting_client()
    decoder = RegistryDecoder(settings, client=counting.client)
    messages = [RawMessage(v, topic="t", offset=i) for i, v in enumerate(values)]
    for _ in range(2):
        out = decode_inputs(messages, pipeline="wire", registry=decoder)
        assert len(out.rows) == 3
        assert len(decoder._resolved) <= 3
    # Three ids never fit a cache of two: every fetch starts over and asks again.
    assert decoder.requests == 6
    # Two ids fit: after one start-over they stay cached, and nothing is asked again.
    small = messages[:2]
    decode_inputs(small, pipeline="wire", registry=decoder)
    asked = decoder.requests
    for _ in range(3):
        decode_inputs(small, pipeline="wire", registry=decoder)
    assert decoder.requests == asked and len(decoder._resolved) == 2
