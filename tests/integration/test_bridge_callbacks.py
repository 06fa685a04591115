"""Callback URLs on the real broker and Redis: bad ones are refused at submission, one that can
never be sent is dead-lettered (not pending forever), and a name is delivered to the address
that was checked, with its own Host header."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiaas.agents.bridge.state import RequestState
from aiaas.cli.demo.receiver import Receiver
from aiaas.streams.topics import Topics
from tests.inferreads import letters_on
from tests.integration.test_bridge import StackFactory
from tests.integration.test_bridge import stack as stack  # the fixture

REFUSED = ["http://127.0.0.1:9/a\r\nX-Injected: 1", "http://127.0.0.1:9/a\tb", "http://127.0.0.1:9/a b",
           "http://[64:ff9b::7f00:1]:9/", "http://[2002:7f00:1::]:9/", "http://[::127.0.0.1]:9/",
           "http://[64:ff9b::a9fe:a9fe]/latest/meta-data"]


async def test_callbacks_with_control_characters_or_hidden_loopback_are_refused(stack: StackFactory) -> None:
    async with stack(worker=False) as s:  # 127.0.0.1/32 is allowlisted: only the URL's form is wrong
        for url in REFUSED:
            resp = await s.infer(params={"callback": url})
            assert resp.status_code == 400, (url, resp.text)
            assert resp.json()["code"] == "bad_request"
        assert await s.bridge.redis.zcard(s.bridge.rk.webhooks_due()) == 0


async def test_a_callback_that_can_never_be_sent_is_dead_lettered(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        # a state written before URLs were checked at submission (or by an older bridge)
        now = time.time()
        state = RequestState(id=uuid.uuid4().hex, tenant="acme", model="mlp", created=now, deadline=now + 5,
                             callback="http://127.0.0.1:9/a\r\nX-Injected: 1")
        await s.bridge.states.create(state)
        await s.bridge.states.finish(state, b'{"outputs":[]}', status_code=200)
        await s.bridge.dispatcher.enqueue(state.id, "acme")
        (letter, *_) = await letters_on(s.settings, Topics(s.settings).dlq("webhooks").name, 1, timeout_s=30)
        assert letter.details["request_id"] == state.id and letter.details["attempts"] == 1
        assert letter.details["last"].startswith("refused: callback URL contains whitespace")
        async with asyncio.timeout(10):  # the letter is written first, then the state and queue
            while True:
                got = await s.bridge.states.get(state.id)
                assert got is not None
                if got[0].webhook != "pending" and await s.bridge.dispatcher.queue.count("acme") == 0:
                    break  # nothing left pending
                await asyncio.sleep(0.02)
        assert got[0].webhook == "failed" and got[0].status == "failed"


async def test_a_named_callback_goes_to_the_checked_address_with_its_host(stack: StackFactory) -> None:
    async with stack(callback_allowlist=["127.0.0.1/32", "::1/128"]) as s, Receiver() as rx:
        url = f"http://localhost:{rx.port}/hook"
        resp = await s.infer(params={"callback": url})
        assert resp.status_code == 202, resp.text
        hooks = await rx.wait_for(1)
        assert hooks[0].headers["host"] == f"localhost:{rx.port}" and hooks[0].path == "/hook"
        done = await s.poll_done(resp.headers["location"])
        async with asyncio.timeout(10):
            while done["webhook"] != "delivered":
                done = await s.poll_done(resp.headers["location"])
