"""Every Hub request is bounded: a timeout on each request, and a bounded number of attempts.

    bound_hub_requests()        # once per process, before the first Hub call (push, pull, Hub datasets)
    seconds = hub_timeout_s()   # what an error line says it waited

huggingface_hub's shared HTTP client has no timeout of its own (`timeout=None`): only some requests pass one
(metadata: `HF_HUB_ETAG_TIMEOUT`, 10 s, and 60 s when a metadata request is retried; downloads:
`HF_HUB_DOWNLOAD_TIMEOUT`), and some pass an explicit `timeout=None` (`repo_info`, the commit of a push). So a Hub
that accepted the commit and never answered held `pretrain push` (and the checkpoint pusher) for ever.
`bound_hub_requests` gives the shared client a timeout, `PRETRAIN_HUB_TIMEOUT_S` (default 120 s), the longest
wait for one answer (each connect / read / write / pool wait; connecting at most 15 s): a request without a bound
of its own gets it (an explicit `None` included), and a request with a longer bound is cut to it.

Retries are bounded too: a push (with its token check) is tried `HUB_ATTEMPTS` times in all after a failure that
may pass (no answer, a refused connection, HTTP 5xx; hub/push.py, `retrying`), waiting `PRETRAIN_HUB_BACKOFF_S`
(2 s) before the second attempt and twice that before the third; huggingface_hub retries a
metadata request 5 times (backoff 1-8 s) and `datasets` a streamed read
(`datasets.config.STREAMING_READ_MAX_RETRIES`), so Hub datasets add no retries of their own. With hf_xet
huggingface_hub retries the commit too (5 times), so a Hub that never answers ends a push within
`HUB_ATTEMPTS` x (6 x timeout + 23 s) + 6 s: 90 s at `PRETRAIN_HUB_TIMEOUT_S=1` (README, "Hub timeouts").
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pretrain.core.errors import PretrainError
from pretrain.core.network import NETWORK_ERRORS, network_reason

T = TypeVar("T")

TIMEOUT_VARIABLE = "PRETRAIN_HUB_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 120.0
HUB_ATTEMPTS = 3  # tries of one push (or token check) in all, with a short backoff between them
BACKOFF_VARIABLE = "PRETRAIN_HUB_BACKOFF_S"
DEFAULT_BACKOFF_S = 2.0
CONNECT_TIMEOUT_S = 15.0  # connecting never needs the whole budget

_installed_for: float | None = None
_lock = threading.Lock()


def _seconds(variable: str, default: float, zero_ok: bool, what: str) -> float:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):  # inf or 0: no bound at all
        raise PretrainError(
            f"{variable}={raw!r}: not a number of seconds {'>= 0' if zero_ok else '> 0'}; set it to {what} "
            f"(e.g. {default:g}) or unset it"
        )
    return value


def hub_timeout_s() -> float:
    """`PRETRAIN_HUB_TIMEOUT_S` (seconds, a finite number > 0), else 120; any other value is one error."""
    return _seconds(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S, False, "the longest wait for one Hub answer")


def retry_backoff_s() -> float:
    """`PRETRAIN_HUB_BACKOFF_S` (seconds >= 0), else 2: the wait before a push's second attempt (then twice)."""
    return _seconds(BACKOFF_VARIABLE, DEFAULT_BACKOFF_S, True, "the wait before the Hub is asked again")


def bound_hub_requests() -> float:
    """Give huggingface_hub's shared client a timeout (once per process and value); returns it in seconds."""
    global _installed_for
    seconds = hub_timeout_s()
    with _lock:
        if _installed_for == seconds:
            return seconds
        import httpx2
        from huggingface_hub.utils import _http, set_client_factory

        class BoundedClient(httpx2.Client):
            def build_request(self, *args, timeout=httpx2.USE_CLIENT_DEFAULT, **kwargs):
                if timeout is None:  # "no bound" from a caller: ours
                    timeout = httpx2.USE_CLIENT_DEFAULT
                elif isinstance(timeout, int | float):  # a caller's own bound, at most ours
                    timeout = min(float(timeout), seconds)
                return super().build_request(*args, timeout=timeout, **kwargs)

        def bounded_client():
            default = _http.default_client_factory()  # huggingface_hub's hooks and redirects, our timeout
            client = BoundedClient(
                event_hooks=default.event_hooks,
                follow_redirects=default.follow_redirects,
                timeout=httpx2.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_S)),
            )
            default.close()
            return client

        set_client_factory(bounded_client)  # closes the current client: the next request gets a bounded one
        _installed_for = seconds
    return seconds


def failure_reason(exc: BaseException) -> str | None:
    """A few words for a network failure anywhere in `exc`'s chain (datasets wraps huggingface_hub's, which wraps
    httpx's), a timeout named with its bound: "timed out: no answer within 120 s, PRETRAIN_HUB_TIMEOUT_S";
    None when nothing in the chain is a network failure."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    reasons = [network_reason(e) for e in seen if isinstance(e, NETWORK_ERRORS)]
    if "timed out" in reasons:
        return f"timed out: no answer within {hub_timeout_s():g} s, {TIMEOUT_VARIABLE}"
    return reasons[-1] if reasons else None  # the innermost says most (refused, DNS)


def retrying(
    call: Callable[[], T],
    retryable: Callable[[BaseException], bool],
    attempts: int = HUB_ATTEMPTS,
    backoff_s: float | None = None,
) -> T:
    """`call()`, tried again after a failure `retryable` says may pass, `attempts` times in all (waiting
    `backoff_s`, by default `retry_backoff_s()`, then twice that, ...); the last failure propagates."""
    backoff_s = retry_backoff_s() if backoff_s is None else backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not retryable(exc):
                raise
        time.sleep(backoff_s * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
