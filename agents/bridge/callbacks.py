"""SSRF policy for callback URLs: only http(s) to public addresses unless allowlisted.

A callback URL must be printable ASCII-or-letters without whitespace (a CR/LF/TAB in a URL is
refused at submission, not left to fail at every delivery). Its host is resolved and *every*
address it resolves to must be global (not private, loopback, link-local, multicast, reserved,
unspecified, shared) or inside an allowlisted network; an IPv6 address that carries an IPv4
address (IPv4-mapped, IPv4-compatible, SIIT, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo)
is judged by that IPv4 address as well, so ``64:ff9b::7f00:1`` is loopback.

Delivery uses ``resolve``: the host is resolved once, checked, and the POST connects to a checked
address (the original name goes in ``Host`` and in TLS SNI/certificate checks), so a name that
re-resolves to a private address between the check and the connect (DNS rebinding) cannot
redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from aiaas.schemas.errors import CallbackRefused, UnresolvedHost

MAX_URL = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_V6 = ipaddress.IPv6Network
COMPATIBLE, MAPPED, SIIT = _V6("::/96"), _V6("::ffff:0:0/96"), _V6("::ffff:0:0:0/96")
NAT64, NAT64_LOCAL, SIXTOFOUR = _V6("64:ff9b::/96"), _V6("64:ff9b:1::/48"), _V6("2002::/16")
LOW32 = (COMPATIBLE, MAPPED, SIIT, NAT64)  # the IPv4 address is the last 32 bits


@dataclass(frozen=True, slots=True)
class Target:
    """A checked callback: POST to one of ``urls`` (the checked addresses, in resolver order)
    with ``host`` as Host header and TLS server name."""

    urls: tuple[str, ...]
    host: str
    host_header: str

    def extensions(self) -> dict[str, str]:
        """httpx request extensions: TLS SNI and certificate checks use the callback's name."""
        return {"sni_hostname": self.host}


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (translation and tunnel forms)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found = [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)] if any(ip in net for net in LOW32) else []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def has_bad_characters(url: str) -> bool:
    """Whitespace or a non-printable character anywhere (CR/LF/TAB would split headers)."""
    return any(ch.isspace() or not ch.isprintable() for ch in url)


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
        """Allowlisted, else it and every IPv4 address it embeds are global. Only the address
        itself (or the IPv4 of an IPv4-mapped one: the same socket) matches the allowlist: a NAT64
        or 6to4 form of an allowlisted address is someone else's loopback or network."""
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if any((mapped or ip) in net for net in self.networks):
            return True
        forms: list[IPAddress] = [ip, *embedded_ipv4(ip)]
        if isinstance(ip, ipaddress.IPv6Address) and ip in NAT64_LOCAL:
            return False  # local-use NAT64 (RFC 8215): a private translator, whatever it embeds
        return all(f.is_global and not f.is_multicast for f in forms)

    async def check(self, url: str) -> str:
        """Return the URL when it may be called; raise CallbackRefused saying why not. An
        allowlisted host name is not resolved here (it need not resolve from every bridge yet)."""
        _, host, port = _parse(url)
        if not self._allowlisted(host, port):
            self._checked(url, await _resolve(host, port))
        return url

    def _allowlisted(self, host: str, port: int) -> bool:
        return host in self.hosts or f"{host}:{port}" in self.hosts

    def _checked(self, url: str, addrs: list[IPAddress]) -> list[IPAddress]:
        """The addresses to connect to, once every address of the host passed."""
        for ip in addrs:
            if not self.allowed_address(ip):
                raise CallbackRefused(
                    "callback address is private, loopback, link-local or reserved",
                    url=url, address=str(ip),
                )
        return addrs

    async def resolve(self, url: str) -> Target:
        """Resolve once, check every address, and name the one to connect to."""
        parts, host, port = _parse(url)
        addrs = await _resolve(host, port)
        ips = addrs if self._allowlisted(host, port) else self._checked(url, addrs)
        return _target(parts, host, port, ips)


def _target(parts: SplitResult, host: str, port: int, ips: list[IPAddress]) -> Target:
    urls = dict.fromkeys(  # unique, in order (getaddrinfo repeats an address per protocol)
        urlunsplit((parts.scheme, f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}",
                    parts.path or "/", parts.query, "")) for ip in ips)
    name = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    return Target(tuple(urls), host, name if port == default else f"{name}:{port}")


def _parse(url: str) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise CallbackRefused("callback URL missing or too long", limit=MAX_URL)
    if has_bad_characters(url):
        raise CallbackRefused("callback URL contains whitespace or control characters")
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
    try:
        host = parts.hostname.lower().encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise CallbackRefused("callback host is not a valid name", detail=str(exc)) from exc
    return parts, host, port or (443 if parts.scheme == "https" else 80)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5.0):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UnresolvedHost("callback host does not resolve", host=host, detail=str(exc)) from exc
    addrs = []
    for *_, sockaddr in infos:
        try:
            addrs.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ValueError:
            continue
    if not addrs:
        raise CallbackRefused("callback host has no usable address", host=host)
    return addrs
