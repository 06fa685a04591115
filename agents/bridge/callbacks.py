"""SSRF policy for callback URLs: only http(s) to public addresses unless allowlisted.

A callback host is resolved and *every* address it resolves to must be global (not private,
loopback, link-local, multicast, reserved, unspecified, shared) or inside an allowlisted network.
The dispatcher checks again right before each POST, so a name that re-resolves to a private
address later is still refused. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from agents.bridge.errors import CallbackRefused

MAX_URL = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackPolicy:
    """Checks callback URLs against the scheme rules, the address ranges and the allowlist."""

    def __init__(self, allowlist: Sequence[str]) -> None:
        self.networks: list[IPNetwork] = []
        self.hosts: set[str] = set()
        for entry in allowlist:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower())

    def allowed_address(self, ip: IPAddress) -> bool:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        ip = mapped or ip
        if any(ip in net for net in self.networks):
            return True
        return ip.is_global and not ip.is_multicast

    async def check(self, url: str) -> str:
        """Return the URL when it may be called; raise CallbackRefused saying why not."""
        host, port = _parse(url)
        if host in self.hosts or f"{host}:{port}" in self.hosts:
            return url
        for ip in await _resolve(host, port):
            if not self.allowed_address(ip):
                raise CallbackRefused(
                    "callback address is private, loopback, link-local or reserved",
                    url=url, address=str(ip),
                )
        return url


def _parse(url: str) -> tuple[str, int]:
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise CallbackRefused("callback URL missing or too long", limit=MAX_URL)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused("callback URL does not parse", detail=str(exc)) from exc
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("callback URL must be http or https", scheme=parts.scheme)
    if not parts.hostname:
        raise CallbackRefused("callback URL has no host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("callback URL must not carry credentials")
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5.0
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise CallbackRefused("callback host does not resolve", host=host, detail=str(exc)) from exc
    addrs = []
    for *_, sockaddr in infos:
        try:
            addrs.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ValueError:
            continue
    if not addrs:
        raise CallbackRefused("callback host has no usable address", host=host)
    return addrs
