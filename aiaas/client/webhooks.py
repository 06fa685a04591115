"""Signed webhooks: how the bridge signs callbacks and how receivers check them.

Header: ``X-Aiaas-Signature: t=<unix ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>``. The
timestamp is inside the MAC, so a receiver that checks it against a tolerance window rejects
replays of an old, validly signed body. Several ``v1=`` entries may appear (secret rotation):
one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from aiaas.schemas.errors import SignatureError

SIGNATURE_HEADER = "X-Aiaas-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def compute_signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    msg = str(timestamp).encode() + b"." + body
    return hmac.new(_key(secret), msg, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Aiaas-Signature`` header value for ``body`` (signed now unless told when)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},{SCHEME}={compute_signature(secret, ts, body)}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """Split a signature header into its timestamp and the ``v1`` signatures it carries."""
    ts: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                ts = int(value)
            except ValueError:
                raise SignatureError("signature timestamp is not an integer") from None
        elif name == SCHEME:
            sigs.append(value)
    if ts is None:
        raise SignatureError("signature header has no timestamp")
    if not sigs:
        raise SignatureError("signature header has no v1 signature")
    return ts, sigs


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> int:
    """Check a received webhook; returns its timestamp or raises ``SignatureError`` with why.

    ``body`` must be the raw bytes as received (not re-serialised JSON). A timestamp further than
    ``tolerance_s`` from ``now`` is refused even with a valid MAC: that is a replay (or a clock
    far off).
    """
    if not header:
        raise SignatureError("missing signature header", header=SIGNATURE_HEADER)
    ts, sigs = parse_header(header)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(
            "signature timestamp outside the tolerance window",
            timestamp=ts, now=int(current), tolerance_s=tolerance_s,
        )
    expected = compute_signature(secret, ts, body)
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise SignatureError("signature does not match the body")
    return ts
