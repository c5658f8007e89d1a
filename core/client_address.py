"""The address a request came from, as the sign-in limiter (frontdesk/ratelimit.py) and the API's throttle
(api/throttling.py) count it: one reading for both, so a budget is neither one proxy's nor a forged header's.

`REMOTE_ADDR` is the peer gunicorn (or the development server) accepted the connection from. When that peer is a
trusted proxy, as gunicorn's `forwarded_allow_ips` names it (settings.FORWARDED_ALLOW_IPS, the same environment
variable config/gunicorn.py reads; a Unix socket's peer, which has no address, is trusted as gunicorn trusts it),
the client is the last hop X-Forwarded-For names that is not itself a trusted proxy: what the proxy nearest us
appended, the address that connected to it. A client connecting directly is counted by its own address,
whatever X-Forwarded-For it writes.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

UNKNOWN = "unknown"


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed if item != "*")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or any(address in network for network in _networks(allowed))


def client_address(request) -> str:
    """The client's address (text, normalised), or "unknown" when neither the peer nor a proxy gives one."""
    meta = request.META
    allowed = tuple(settings.FORWARDED_ALLOW_IPS)
    remote = (meta.get("REMOTE_ADDR") or "").strip()
    peer = _address(remote)
    if peer is not None and not _trusted(peer, allowed):
        return str(peer)  # a direct client: its X-Forwarded-For is its own words
    if peer is None and remote:
        return remote  # not an address, nor a Unix socket's empty one: counted as it is
    # A trusted proxy (or a Unix socket's peer): walk X-Forwarded-For from the nearest hop, past trusted proxies
    # (all of them are, for "*": the nearest hop is the client). Every hop trusted: the furthest one read.
    client = peer
    for hop in reversed((meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")):
        address = _address(hop)
        if address is None:
            break  # not an address: nothing further along can be relied on
        client = address
        if "*" in allowed or not _trusted(address, allowed):
            break
    return str(client) if client is not None else UNKNOWN
