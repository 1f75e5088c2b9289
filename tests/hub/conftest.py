"""Fixtures for Hub tests: the loopback Hub-API server (tests/hub/hub_server.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("hub_server", Path(__file__).with_name("hub_server.py"))
hub_server_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_server_module)


@pytest.fixture()
def hub():
    with hub_server_module.HubServer() as server:
        yield server
