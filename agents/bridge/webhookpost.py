"""One webhook POST: the body, its signature, and a connection to the address that was checked.

The callback's host is resolved and checked right before each POST (``CallbackPolicy.resolve``)
and the POST connects to that address, with the original name as ``Host`` and TLS server name,
so DNS rebinding between the check and the connect cannot point it at a private address.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from aiaas.agents.bridge.callbacks import CallbackPolicy, Target
from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.bridge.state import RequestState
from aiaas.client.webhooks import SIGNATURE_HEADER, sign
from aiaas.schemas.errors import AiaasError, UnresolvedHost

_rng = random.Random()  # our own generator: jitter never touches (or depends on) the global one


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: a delay in [half, full] of ``base * 2**(attempt-1)``."""
    full: float = min(max_s, base_s * 2 ** max(0, attempt - 1))  # int ** int is Any to mypy
    return full / 2 + _rng.uniform(0, full / 2)


def webhook_body(state: RequestState, result: bytes | None) -> bytes:
    """The JSON POSTed to a callback: request id, status, and the OIP response or error."""
    body: dict[str, Any] = {"id": state.id, "status": state.status, "model_name": state.model}
    if state.version:
        body["model_version"] = state.version
    if result is not None:
        body["response"] = json.loads(result)
    if state.error is not None:
        body["error"] = state.error
    return json.dumps(body, separators=(",", ":")).encode()


class Poster:
    """Signed POSTs of webhook bodies; ``start()`` opens the HTTP client, ``stop()`` closes it."""

    def __init__(self, policy: CallbackPolicy, store: KeyStore, settings: BridgeSettings) -> None:
        self.policy = policy
        self.store = store
        self.s = settings
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            timeout=self.s.webhook_timeout_s, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=self.s.webhook_concurrency),
        )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def post(self, state: RequestState, body: bytes) -> tuple[str, bool]:
        """One POST; returns (outcome, permanent). Refused URLs are permanent failures."""
        assert state.callback is not None and self._http is not None
        try:
            target = await self.policy.resolve(state.callback)
        except UnresolvedHost as exc:  # DNS may answer again: retried like a failed POST
            return f"error: {exc.reason}", False
        except AiaasError as exc:
            return f"refused: {exc.reason}", True
        tenant = await self.store.tenant(state.tenant)
        if tenant is None:
            return "tenant deleted", True
        headers = {
            "host": target.host_header, "content-type": "application/json",
            SIGNATURE_HEADER: sign(tenant.secret, body),
            "x-aiaas-request-id": state.id, "x-aiaas-attempt": str(state.attempts),
        }
        if target.urls[0].startswith("https:"):
            # the pool keys connections by address: a TLS connection verified for one name must
            # not carry another name's webhook that happens to share the address (a CDN's 421)
            headers["connection"] = "close"
        try:
            resp = await self._post_any(target, body, headers)
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}", False
        except (httpx.InvalidURL, ValueError, UnicodeError) as exc:  # can never be sent
            return f"refused: {type(exc).__name__}", True
        if 200 <= resp.status_code < 300:
            return "delivered", False
        return f"status {resp.status_code}", False

    async def _post_any(self, target: Target, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to the first checked address that accepts a connection (dual-stack hosts)."""
        assert self._http is not None
        for url in target.urls[:-1]:
            try:
                return await self._http.post(url, content=body, headers=headers,
                                             extensions=target.extensions())
            except httpx.ConnectError:
                continue
        return await self._http.post(target.urls[-1], content=body, headers=headers,
                                     extensions=target.extensions())
