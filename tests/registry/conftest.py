"""The real Schema Registry of the registry tests (Apicurio Registry, Confluent-compatible API).

It comes from ``DRIFTLINE_TEST_SCHEMA_REGISTRY_URL`` (``.ci/run`` starts one with
``scripts/registry.sh``). Without it, the session starts one with the same script and stops it
at the end. A test that needs the registry fails, never skips, when none can be had.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftline.config.settings import SchemaRegistry

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "registry.sh"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=5) as reply:
            return isinstance(json.loads(reply.read()), list)
    except Exception:
        return False


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the Confluent-compatible API of a real registry on loopback."""
    url = os.environ.get("DRIFTLINE_TEST_SCHEMA_REGISTRY_URL")
    state = None
    if not url:
        state = tmp_path_factory.mktemp("registry")
        env = {**os.environ, "REGISTRY_STATE_DIR": str(state)}
        out = subprocess.run(
            ["bash", str(SCRIPT), "start"], check=True, env=env, capture_output=True, text=True
        )
        url = out.stdout.strip().rpartition("=")[2]
    if not _answers(url):
        pytest.fail(f"no schema registry answers at {url}: start one with scripts/registry.sh")
    yield url
    if state is not None:
        env = {**os.environ, "REGISTRY_STATE_DIR": str(state)}
        subprocess.run(["bash", str(SCRIPT), "stop"], check=False, env=env)


@pytest.fixture
def registry_settings(registry_url: str) -> SchemaRegistry:
    return SchemaRegistry(url=registry_url)


@pytest.fixture
def client(registry_settings: SchemaRegistry) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient(registry_settings.client_config())


class CountingClient:
    """A real `SchemaRegistryClient` whose HTTP requests are counted (by method and path)."""

    def __init__(self, settings: SchemaRegistry) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.client = SchemaRegistryClient(settings.client_config())
        self.calls: list[str] = []
        rest = self.client._rest_client
        original = rest.send_request

        def send_request(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{method} {url}")
            return original(url, method, *args, **kwargs)

        rest.send_request = send_request


@pytest.fixture
def counting_client(registry_settings: SchemaRegistry) -> Callable[[], CountingClient]:
    return lambda: CountingClient(registry_settings)
