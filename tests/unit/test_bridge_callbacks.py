"""Callback URL checks without a broker: control characters, IPv4 hidden in IPv6 forms, pinning
the checked address for delivery (TLS still checks the callback's name); and per-tenant slots."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from aiaas.agents.bridge.callbacks import CallbackPolicy, Target, embedded_ipv4, has_bad_characters
from aiaas.agents.bridge.slots import AsyncSlots
from aiaas.schemas.errors import CallbackRefused

CONTROL = ["http://8.8.8.8/a\r\nX-Injected: 1", "http://8.8.8.8/a\nb", "http://8.8.8.8/a\tb",
           "http://8.8.8.8/a b", "http://8.8.8.8/\x00", "http://8.8.8.8/\x7f", "http://8.8.8.8/\u2028",
           "\thttp://8.8.8.8/", "http://8.8.8.8/\x0b"]


@pytest.mark.parametrize("url", CONTROL)
async def test_urls_with_whitespace_or_control_characters_are_refused(url: str) -> None:
    assert has_bad_characters(url)
    with pytest.raises(CallbackRefused, match="whitespace or control"):
        await CallbackPolicy(["0.0.0.0/0"]).check(url)  # refused even where every address is allowed


LOOPBACK_OR_PRIVATE_IN_V6 = [
    "http://[64:ff9b::7f00:1]/",        # NAT64 of 127.0.0.1
    "http://[64:ff9b::a00:1]/",         # NAT64 of 10.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",     # NAT64 of 169.254.169.254 (cloud metadata)
    "http://[64:ff9b:1::808:808]/",     # local-use NAT64 (RFC 8215): private whatever it embeds
    "http://[2002:7f00:1::]/",          # 6to4 of 127.0.0.1
    "http://[2002:c0a8:101::1]/",       # 6to4 of 192.168.1.1
    "http://[::127.0.0.1]/",            # IPv4-compatible
    "http://[::ffff:127.0.0.1]/",       # IPv4-mapped
    "http://[::ffff:0:7f00:1]/",        # SIIT (IPv4-translated)
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
]


@pytest.mark.parametrize("url", LOOPBACK_OR_PRIVATE_IN_V6)
async def test_ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_address(url: str) -> None:
    with pytest.raises(CallbackRefused, match="private, loopback"):
        await CallbackPolicy([]).check(url)


async def test_embedded_forms_of_public_addresses_pass_and_allowlist_is_not_widened() -> None:
    for url in ["http://[64:ff9b::808:808]/h", "http://[2002:808:808::1]/", "http://[2606:4700::1111]/"]:
        assert await CallbackPolicy([]).check(url) == url
    policy = CallbackPolicy(["127.0.0.1/32"])
    assert await policy.check("http://[::ffff:127.0.0.1]:9/")  # mapped: the same socket as 127.0.0.1
    for url in ["http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/", "http://[::127.0.0.1]/"]:
        with pytest.raises(CallbackRefused):  # someone else's loopback, not the allowlisted one
            await policy.check(url)
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::c000:221")) == [ipaddress.ip_address("192.0.2.33")]
    assert embedded_ipv4(ipaddress.ip_address("2002:c000:221::")) == [ipaddress.ip_address("192.0.2.33")]
    assert embedded_ipv4(ipaddress.ip_address("8.8.8.8")) == []


async def test_delivery_target_connects_to_the_checked_address_with_the_original_host() -> None:
    policy = CallbackPolicy(["127.0.0.1/32", "::1/128"])
    target = await policy.resolve("http://localhost:8123/hook?x=1#frag")
    # the connect goes to literal, checked addresses: no second DNS lookup can rebind it
    assert target.urls and all(ipaddress.ip_address(u.split("//")[1].rsplit(":", 1)[0].strip("[]"))
                                .is_loopback for u in target.urls)
    assert all(u.endswith(":8123/hook?x=1") for u in target.urls)
    assert target.host_header == "localhost:8123" and target.extensions() == {"sni_hostname": "localhost"}
    tls = await CallbackPolicy([]).resolve("https://[2606:4700::1111]/w")
    assert tls.urls == ("https://[2606:4700::1111]:443/w",) and tls.host_header == "[2606:4700::1111]"
    with pytest.raises(CallbackRefused):
        await CallbackPolicy([]).resolve("http://localhost:8123/hook")  # loopback, not allowlisted


def test_async_slots_bound_each_tenant_and_the_bridge() -> None:
    slots = AsyncSlots(total=5, per_tenant=3)
    assert [slots.try_take("flood") for _ in range(4)] == [None, None, None, "tenant"]
    assert slots.try_take("calm") is None and slots.try_take("calm") is None
    assert slots.try_take("third") == "bridge"  # 5 of 5 taken
    slots.release("flood")
    assert slots.try_take("third") is None and slots.in_use == 5
    for tenant in ["flood", "flood", "calm", "calm", "third"]:
        slots.release(tenant)
    assert slots.in_use == 0 and not slots.held


@pytest.fixture
def hooks_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and key) for the name hooks.test."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=hooks.test",
                    "-addext", "subjectAltName=DNS:hooks.test"], check=True, capture_output=True)
    return cert, key


async def test_tls_to_the_pinned_address_checks_the_certificate_against_the_callback_name(
    hooks_cert: tuple[Path, Path],
) -> None:
    cert, key = hooks_cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    hosts: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            head = await reader.readuntil(b"\r\n\r\n")
            hosts.extend(h for h in head.split(b"\r\n") if h.lower().startswith(b"host:"))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    # the policy would resolve hooks.test; here its checked address is 127.0.0.1 (allowlisted)
    target = await CallbackPolicy(["127.0.0.1/32"]).resolve(f"https://127.0.0.1:{port}/h")
    named = Target(target.urls, "hooks.test", f"hooks.test:{port}")
    other = Target(target.urls, "other.test", f"other.test:{port}")
    async with server, httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as http:
        for t, ok in [(named, True), (other, False)]:
            call = http.post(t.urls[0], content=b"{}", extensions=t.extensions(),
                             headers={"host": t.host_header, "connection": "close"})
            if ok:
                assert (await call).status_code == 204
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await call
    assert hosts == [f"host: hooks.test:{port}".encode()]
