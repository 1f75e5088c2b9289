"""Every Hub request is bounded: huggingface_hub's shared client gets a timeout (even for a caller's explicit
`timeout=None`), a request with its own bound keeps it, and `retrying` tries a failure that may pass a bounded
number of times."""

from __future__ import annotations

import socket
import threading
import time

import httpx2
import pytest

from pretrain.core.errors import PretrainError
from pretrain.hub import session


@pytest.fixture()
def fresh_client(monkeypatch):
    """huggingface_hub's own client factory before and after the test (no timeout of its own), online."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http, set_client_factory

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(session, "_installed_for", None)
    set_client_factory(_http.default_client_factory)
    yield
    set_client_factory(_http.default_client_factory)


@pytest.fixture()
def silent_endpoint():
    """http://127.0.0.1:PORT that accepts connections (backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _time_request(url: str, timeout) -> tuple[BaseException | None, float]:
    """GET `url` through huggingface_hub's session in a thread (joined at most 30 s): what it raised, how long."""
    from huggingface_hub.utils import get_session

    outcome: list[BaseException | None] = []

    def request():
        try:
            get_session().get(url, timeout=timeout)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, "the request was still waiting after 30 s: no timeout applied"
    return outcome[0], time.monotonic() - start


def test_a_request_without_a_bound_gets_the_hub_timeout(fresh_client, silent_endpoint, monkeypatch):
    """`repo_info` and the commit of a push pass `timeout=None`: they used to wait for ever on a silent Hub."""
    monkeypatch.setenv(session.TIMEOUT_VARIABLE, "0.3")
    assert session.bound_hub_requests() == 0.3
    exc, took = _time_request(f"{silent_endpoint}/api/models/x", timeout=None)
    assert isinstance(exc, httpx2.TimeoutException), exc
    assert took < 10, took


@pytest.mark.parametrize(("ours", "own"), [("600", 0.3), ("0.3", 60.0)])
def test_a_request_with_its_own_bound_gets_the_shorter_one(
    fresh_client, silent_endpoint, monkeypatch, ours, own
):
    """huggingface_hub retries a metadata request with a 60 s bound of its own: cut to ours."""
    monkeypatch.setenv(session.TIMEOUT_VARIABLE, ours)
    session.bound_hub_requests()
    exc, took = _time_request(f"{silent_endpoint}/api/whoami-v2", timeout=own)
    assert isinstance(exc, httpx2.TimeoutException) and took < 10, (exc, took)


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "inf", "nan"])
def test_a_timeout_that_is_no_bound_is_one_error(monkeypatch, raw):
    monkeypatch.setenv(session.TIMEOUT_VARIABLE, raw)
    with pytest.raises(PretrainError, match=f"PRETRAIN_HUB_TIMEOUT_S='{raw}': not a number of seconds > 0"):
        session.hub_timeout_s()


def test_the_default_timeout(monkeypatch):
    monkeypatch.delenv(session.TIMEOUT_VARIABLE, raising=False)
    assert session.hub_timeout_s() == session.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(session.TIMEOUT_VARIABLE, "2.5")
    assert session.hub_timeout_s() == 2.5


def test_retrying_tries_a_passing_failure_a_bounded_number_of_times(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(session.time, "sleep", sleeps.append)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "done"

    assert session.retrying(flaky, lambda exc: isinstance(exc, ConnectionError), 3, 2.0) == "done"
    assert len(calls) == 3 and sleeps == [2.0, 4.0]

    calls.clear()

    def down() -> str:
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        session.retrying(down, lambda exc: True, 3, 0.0)
    assert len(calls) == 3  # then the last failure propagates


def test_retrying_does_not_retry_what_cannot_pass():
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise PermissionError("401")

    with pytest.raises(PermissionError):
        session.retrying(refused, lambda exc: isinstance(exc, ConnectionError), 3, 0.0)
    assert calls == [1]
