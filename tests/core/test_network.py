"""Telling a network failure from a bug, and naming it in a few words for a one-line error."""

from __future__ import annotations

import socket

import httpx2
import pytest
from huggingface_hub.errors import OfflineModeIsEnabled

from pretrain.core.network import NETWORK_ERRORS, network_reason


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("refused"),
        httpx2.ReadTimeout("slow"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError("reset by peer"),
        TimeoutError("timed out"),
        socket.gaierror(-2, "Name or service not known"),
        OfflineModeIsEnabled("offline"),
    ],
)
def test_transport_failures_are_network_errors(exc):
    assert isinstance(exc, NETWORK_ERRORS)


@pytest.mark.parametrize(
    "exc", [ValueError("bad"), KeyError("x"), RuntimeError("bug"), FileNotFoundError("f")]
)
def test_bugs_and_local_errors_are_not_network_errors(exc):
    assert not isinstance(exc, NETWORK_ERRORS)


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        TimeoutError("whatever"),
        httpx2.ReadTimeout("the read operation did not finish"),
        httpx2.ConnectTimeout(""),
        OSError("the connection timed out"),
    ],
)
def test_a_timeout_reads_timed_out(exc):
    assert network_reason(exc) == "timed out"


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        httpx2.ConnectError("[Errno 111] Connection REFUSED"),
    ],
)
def test_a_refused_connection_reads_connection_refused(exc):
    assert network_reason(exc) == "connection refused"


@pytest.mark.parametrize(
    "message",
    [
        "[Errno -2] Name or service not known",
        "[Errno 8] nodename nor servname provided, or not known",
        "getaddrinfo failed",
        "Temporary failure in name resolution",
    ],
)
def test_a_failed_name_lookup_reads_dns_lookup_failed(message):
    assert network_reason(httpx2.ConnectError(message)) == "DNS lookup failed"


def test_any_other_failure_is_its_type_and_first_line():
    exc = ConnectionResetError("  reset by peer\nsecond line of detail  ")
    assert network_reason(exc) == "ConnectionResetError: reset by peer"


def test_a_failure_without_a_message_is_its_type():
    assert network_reason(ConnectionResetError()) == "ConnectionResetError"
    assert network_reason(httpx2.ConnectError("   ")) == "ConnectError"
