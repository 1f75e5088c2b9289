"""Telling a network failure from a bug: what the Hub clients raise when the network, a proxy or DNS fails.

Every command that talks to the Hub (push, Hub datasets, lm-eval tasks whose data lives on the Hub) turns
these into one `error:` line saying what could not be reached and what to do, never a traceback.
"""

from __future__ import annotations

import socket

import httpx2  # huggingface_hub's HTTP client

# refused, reset, timed out, DNS; ConnectionError also covers datasets' "Couldn't reach" and
# huggingface_hub's OfflineModeIsEnabled
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.HTTPError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)
DNS_FAILURE_MARKERS = ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution")


def network_reason(exc: BaseException) -> str:
    """A few words for a transport failure: connection refused, timed out, DNS lookup failed, ..."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() or "timed out" in lowered:
        return "timed out"
    if "refused" in lowered:
        return "connection refused"
    if any(marker in lowered for marker in DNS_FAILURE_MARKERS):
        return "DNS lookup failed"
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
