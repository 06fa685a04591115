"""Kafka authorization errors as one ``Forbidden`` line naming the principal and the resource.

With access control on (docs/operations.md, "Access control") a client that reaches for a topic or
group its user has no ACL for gets TOPIC/GROUP/TRANSACTIONAL_ID_AUTHORIZATION_FAILED. Retrying
cannot fix that, and aiokafka's error names neither who asked nor, for a group, what: the shared
wrappers (admin, producer, consumer) raise this instead, and the CLI prints it in one line.
"""

from __future__ import annotations

from aiaas.schemas.errors import Forbidden
from aiaas.streams.settings import Settings

AUTHORIZATION_CODES = {29: "TopicAuthorizationFailedError", 30: "GroupAuthorizationFailedError",
                       31: "ClusterAuthorizationFailedError", 53: "TransactionalIdAuthorizationFailed"}


def principal(settings: Settings) -> str:
    """The principal the broker sees for these settings (SASL user, else ANONYMOUS)."""
    return f"User:{settings.sasl_username}" if settings.sasl_username else "User:ANONYMOUS"


def is_authorization_error(exc: BaseException) -> bool:
    return type(exc).__name__ in AUTHORIZATION_CODES.values()


def forbidden(settings: Settings, resource: str, doing: str, kafka_error: str) -> Forbidden:
    """``Kafka ACLs refuse User:x on <resource> (<doing>)``: one line, with where grants come from."""
    who = principal(settings)
    return Forbidden(f"Kafka ACLs refuse {who} on {resource} ({doing}); grants: aiaas acl apply, "
                     "docs/operations.md 'Access control'", principal=who, resource=resource,
                     kafka_error=kafka_error)


def forbidden_from(settings: Settings, exc: BaseException, doing: str, default: str = "") -> Forbidden | None:
    """``forbidden`` for an aiokafka authorization error (its message names the topics), else None."""
    if not is_authorization_error(exc):
        return None
    text = str(exc)
    resource = text.split(":", 1)[1].strip() if ":" in text else default
    return forbidden(settings, resource or default or "(unknown)", doing, type(exc).__name__)
