"""Outbound URLs the platform calls on a vendor's behalf (webhooks, JWKS): refuse private and loopback targets.

A vendor controls the URL, so without this check a webhook could make the platform call its own internal
services (SSRF). In production every address the host name resolves to must be a public unicast address, and
the check is repeated when connecting (``resolve_public``), so a DNS answer that changes after registration
(DNS rebinding) is caught too. Local development and tests may point at loopback.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """The URL may not be called from the platform: wrong scheme, or a non-public address."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_public(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, all public; :class:`UnsafeUrl` when any is not (or none resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeUrl(f"host {host!r} does not resolve: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    private = [address for address in addresses if not _is_public(address)]
    if private:
        raise UnsafeUrl(f"host {host!r} resolves to a private, loopback or reserved address ({', '.join(private)})")
    return addresses


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, including the legacy IPv4 forms resolvers still accept
    (``2130706433``, ``0x7f.1``, ``127.1``), which would otherwise pass as host names."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(character in "0123456789abcdefxABCDEFX." for character in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_outbound_url(url: str, *, production: bool, resolve: bool = True) -> None:
    """Raise :class:`UnsafeUrl` unless the platform may call ``url``.

    Outside production any http(s) URL passes. In production the URL must be https, must not name an IP
    literal outside public space, and (with ``resolve``) its host must resolve to public addresses only.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("must be an absolute http(s) URL")
    if not production:
        return
    if parts.scheme != "https":
        raise UnsafeUrl("must use https")
    host = parts.hostname.rstrip(".")  # "localhost." is localhost
    literal = _ip_literal(host)
    if literal is not None:
        if not _is_public(str(literal)):
            raise UnsafeUrl(f"{host} is a private, loopback or reserved address")
        return
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".svc", ".cluster.local")):
        raise UnsafeUrl(f"{host} is an internal host name")
    if resolve:
        resolve_public(host, parts.port or 443)
