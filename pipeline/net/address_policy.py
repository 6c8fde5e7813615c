"""The address policy of remote inputs: which destinations a clip's traffic may reach.

Part of the confinement described in `pipeline.net.netguard` (which re-exports these names): the
guard proxy (`pipeline.net.guard_proxy`) asks `AddressPolicy.check` before every connection.
Link-local addresses (cloud metadata) are refused always; loopback, private and other
non-global addresses unless the user's own URL or ``--video_url_template`` names that host and
port. Names are resolved here and the checked addresses are what the proxy connects to.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable

# Host names of cloud metadata servers (their addresses are link-local as well).
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "metadata.goog", "instance-data",
                             "instance-data.ec2.internal"})
_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(Exception):
    """The policy refuses a destination; ``reason`` is a failure-report reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _unmap(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address hidden in an IPv4-mapped or NAT64 IPv6 address, else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _canonical_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(_unmap(ipaddress.ip_address(host)))
    except ValueError:
        return host


def url_host_port(url: str) -> tuple[str, int]:
    """The canonical ``(host, port)`` of an http(s) URL; AddressRefused(``invalid_url``) otherwise."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise AddressRefused("invalid_url", f"not an http(s) URL with a host: {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise AddressRefused("invalid_url", f"bad port in {url!r}") from e
    return _canonical_host(parts.hostname), port


class AddressPolicy:
    """Which destinations a clip's network traffic may reach.

    Args:
        named_urls: URLs the user wrote (the CSV's video URL, ``--video_url_template``
            with any id): their ``(host, port)`` may be loopback or private.
    """

    def __init__(self, named_urls: Iterable[str] = ()):
        self.named: frozenset[tuple[str, int]] = frozenset(
            url_host_port(url) for url in named_urls if urllib.parse.urlsplit(url).scheme.lower() in DEFAULT_PORTS)

    def check(self, host: str, port: int) -> list[tuple]:
        """Resolves ``host`` and returns the ``getaddrinfo`` entries that may be used.

        Raises:
            AddressRefused: ``address_not_allowed`` for a metadata server, a link-local
                address, or a non-global address the user did not name;
                ``network`` when the name does not resolve.
        """
        name = _canonical_host(host)
        if not name or not 0 < port < 65536:
            raise AddressRefused("invalid_url", f"bad destination {host!r}:{port}")
        if name in _METADATA_NAMES or name.endswith(".internal"):
            raise AddressRefused("address_not_allowed", f"refusing metadata server host {host!r}")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise AddressRefused("network", f"cannot resolve {host!r}: {e}") from e
        named = (name, port) in self.named
        allowed = []
        for info in infos:
            ip = _unmap(ipaddress.ip_address(info[4][0].split("%", 1)[0]))
            refusal = self._refusal(ip, named=named)
            if refusal:
                raise AddressRefused("address_not_allowed", f"refusing {host}:{port} ({ip}): {refusal}")
            allowed.append(info)
        if not allowed:
            raise AddressRefused("network", f"no address for {host!r}")
        return allowed

    @staticmethod
    def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, named: bool) -> str | None:
        if ip in (_LINK_LOCAL_V4 if ip.version == 4 else _LINK_LOCAL_V6):
            return "link-local addresses (cloud metadata) are never fetched"
        if ip.is_multicast or ip.is_unspecified:
            return "not a unicast address"
        if not ip.is_global and not named:
            return ("loopback/private address not named by the input URL or --video_url_template "
                    "(name this host and port there to allow it)")
        return None
