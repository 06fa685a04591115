"""Callback URL checks without a broker: control characters, IPv4 hidden in IPv6 forms, pinning
the checked address for delivery; and the per-tenant async slot bound."""

from __future__ import annotations

import ipaddress

import pytest

from agents.bridge.callbacks import CallbackPolicy, embedded_ipv4, has_bad_characters
from agents.bridge.errors import CallbackRefused
from agents.bridge.slots import AsyncSlots

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
    assert target.host_header == "localhost:8123" and target.extensions() == {"sni_hostname": b"localhost"}
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
