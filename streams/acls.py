"""Access control on the broker: a SCRAM user per role and per tenant, with least-privilege ACLs
derived from the topic catalog (``aiaas.streams.topics``); docs/operations.md, "Access control".

``plan`` says who may do what; ``AclAdmin.apply`` creates the users (passwords kept under the
state dir, ``credentials/<user>.env``, reused on the next apply) and the ACLs, both idempotently.
What the policy guarantees: a tenant writes only the request topics of the models it is allowed
and reads only reply topics named ``replies.<tenant>-...`` (its client id is the tenant, see
README "Configuration"); trainers read training topics but write only gradients, ring inboxes
and metrics (never parameters); only the aggregator (and the admin, a super user) writes the
registry (``models``, ``artifacts``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from aiokafka.errors import for_code
from pydantic import BaseModel, SecretStr

from aiaas.schemas.errors import AiaasError, BadRequest, ErrorCode, Forbidden, NotFound
from aiaas.streams.aclwire import (
    AlterUserScramCredentials,
    Binding,
    CreateAcls,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    ScramMechanism,
    describe_all,
)
from aiaas.streams.admin import Admin
from aiaas.streams.metadata import kafka_client_of
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, check_part

Role = Literal["trainer", "aggregator", "inference", "bridge", "scoring"]
ROLES: tuple[Role, ...] = ("trainer", "aggregator", "inference", "bridge", "scoring")
CLUSTER = "kafka-cluster"
SECURITY_DISABLED = 54  # the broker runs no authorizer
Op = Operation


class Grant(BaseModel):
    """One ALLOW binding: ``principal`` may ``operation`` on a resource (literal or by prefix)."""

    principal: str
    resource: Literal["TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID"]
    name: str
    pattern: Literal["LITERAL", "PREFIXED"] = "LITERAL"
    operation: str
    permission: Literal["ALLOW", "DENY"] = "ALLOW"

    def binding(self) -> Binding:
        return (ResourceType[self.resource], self.name, PatternType[self.pattern], self.principal, "*",
                Operation[self.operation], Permission[self.permission])

    def line(self) -> str:
        star = "*" if self.pattern == "PREFIXED" else ""
        return f"{self.principal} {self.permission} {self.operation} {self.resource}:{self.name}{star}"


def role_user(role: str) -> str:
    return f"aiaas-{role}"


def tenant_user(tenant: str) -> str:
    """``tenant-<T>``; T has no '-': tenant a's reply prefix ``replies.a-`` would cover tenant a-b's."""
    if "-" in check_part(tenant):
        raise BadRequest(f"invalid tenant name {tenant!r}: no '-' (it ends the tenant in reply topic names)",
                         tenant=tenant)
    return f"tenant-{tenant}"


class Plan(BaseModel):
    """Users to create and the grants for each (``user -> grants``)."""

    grants: dict[str, list[Grant]]

    def bindings(self) -> list[Binding]:
        return [g.binding() for gs in self.grants.values() for g in gs]


def _g(user: str, resource: str, name: str, ops: Iterable[Op], prefixed: bool = False) -> list[Grant]:
    pattern = "PREFIXED" if prefixed else "LITERAL"
    return [Grant(principal=f"User:{user}", resource=resource, name=name, pattern=pattern,
                  operation=op.name) for op in ops]


def _registry_reader(user: str, t: Topics) -> list[Grant]:
    return _g(user, "TOPIC", t.models().name, [Op.READ, Op.DESCRIBE]) + \
        _g(user, "TOPIC", t.artifacts().name, [Op.READ, Op.DESCRIBE]) + \
        _g(user, "CLUSTER", CLUSTER, [Op.IDEMPOTENT_WRITE])


def _trainer(s: Settings, jobs: Sequence[str]) -> list[Grant]:
    u, t = role_user("trainer"), Topics(s)
    out = _registry_reader(u, t) + _g(u, "TOPIC", t.jobs().name, [Op.READ, Op.DESCRIBE])
    out += _g(u, "TOPIC", s.topic("train."), [Op.READ, Op.DESCRIBE, Op.CREATE], prefixed=True)
    out += _g(u, "GROUP", s.topic("train."), [Op.READ, Op.DESCRIBE], prefixed=True)
    for job in jobs:  # writes: gradients, ring inboxes, metrics; the parameter topic never
        for spec in (t.train_grads(job), t.train_ring(job), t.train_metrics(job)):
            out += _g(u, "TOPIC", spec.name, [Op.WRITE])
    return out


def _aggregator(s: Settings) -> list[Grant]:
    u, t = role_user("aggregator"), Topics(s)
    out = _registry_reader(u, t) + _g(u, "TOPIC", t.jobs().name, [Op.READ, Op.DESCRIBE])
    for spec in (t.models(), t.artifacts(), t.jobs()):  # the registry; the job's status
        out += _g(u, "TOPIC", spec.name, [Op.WRITE])
    out += _g(u, "TOPIC", s.topic("train."), [Op.READ, Op.WRITE, Op.CREATE, Op.DESCRIBE], prefixed=True)
    out += _g(u, "TRANSACTIONAL_ID", s.topic("train."), [Op.WRITE, Op.DESCRIBE], prefixed=True)  # checkpoints
    return out + _g(u, "GROUP", s.topic("train."), [Op.READ, Op.DESCRIBE], prefixed=True)


def _inference(s: Settings) -> list[Grant]:
    u, t = role_user("inference"), Topics(s)
    out = _registry_reader(u, t)
    out += _g(u, "TOPIC", s.topic("infer."), [Op.READ, Op.WRITE, Op.CREATE, Op.DESCRIBE], prefixed=True)
    out += _g(u, "TOPIC", s.topic("replies."), [Op.WRITE, Op.DESCRIBE], prefixed=True)
    out += _g(u, "GROUP", s.topic("inference."), [Op.READ, Op.DESCRIBE], prefixed=True)
    return out + _g(u, "TRANSACTIONAL_ID", s.topic("inference."), [Op.WRITE, Op.DESCRIBE], prefixed=True)


def _bridge(s: Settings, client: str) -> list[Grant]:
    """The bridge sends any tenant's request (it checks API keys itself) and reads its own replies."""
    u, t = role_user("bridge"), Topics(s)
    out = _registry_reader(u, t)
    for spec in (t.audit(), t.dlq("webhooks")):  # audit records; webhooks it could not deliver
        out += _g(u, "TOPIC", spec.name, [Op.WRITE, Op.DESCRIBE, Op.CREATE])
    out += _g(u, "TOPIC", t.jobs().name, [Op.READ, Op.WRITE, Op.DESCRIBE])  # POST /v1/jobs, job status
    out += _g(u, "TOPIC", s.topic("infer."), [Op.WRITE, Op.DESCRIBE], prefixed=True)
    out += _g(u, "TOPIC", s.topic("scaling."), [Op.READ, Op.DESCRIBE], prefixed=True)  # the status page's
    # its reply topics are replies.bridge-<instance> (agents/bridge/settings.py, reply_client)
    return out + _g(u, "TOPIC", s.topic(f"replies.{check_part(client)}-"), [Op.READ, Op.CREATE, Op.DESCRIBE],
                    prefixed=True)


def _scoring(s: Settings, pairs: Sequence[tuple[str, str]]) -> list[Grant]:
    u, t = role_user("scoring"), Topics(s)
    out = _registry_reader(u, t)
    for src, dst in pairs:
        out += _g(u, "TOPIC", check_part(src), [Op.READ, Op.DESCRIBE])
        out += _g(u, "TOPIC", check_part(dst), [Op.WRITE, Op.CREATE, Op.DESCRIBE], prefixed=True)  # and .dlq
    out += _g(u, "GROUP", s.topic("score."), [Op.READ, Op.DESCRIBE], prefixed=True)
    return out + _g(u, "TRANSACTIONAL_ID", s.topic("score."), [Op.WRITE, Op.DESCRIBE], prefixed=True)


def _tenant(s: Settings, tenant: str, models: Sequence[str]) -> list[Grant]:
    u, t = tenant_user(tenant), Topics(s)
    out = _g(u, "TOPIC", t.models().name, [Op.READ, Op.DESCRIBE])
    # DESCRIBE only: the registry a tenant's CLI opens (aiaas infer's model check) sees that the
    # artifacts topic exists instead of trying to create it; the model files stay unreadable
    out += _g(u, "TOPIC", t.artifacts().name, [Op.DESCRIBE])
    out += _g(u, "CLUSTER", CLUSTER, [Op.IDEMPOTENT_WRITE])
    for model in models:
        out += _g(u, "TOPIC", t.infer_requests(model).name, [Op.WRITE, Op.DESCRIBE])
    return out + _g(u, "TOPIC", s.topic(f"replies.{check_part(tenant)}-"), [Op.READ, Op.CREATE, Op.DESCRIBE],
                    prefixed=True)


def plan(settings: Settings, *, tenants: dict[str, list[str]] | None = None, jobs: Sequence[str] = (),
         score: Sequence[tuple[str, str]] = (), roles: Sequence[str] = ROLES,
         bridge_client: str = "bridge") -> Plan:
    """Every role's user (of ``roles``) and every tenant's (``tenant -> allowed models``), with grants."""
    by_role = {"trainer": lambda: _trainer(settings, jobs), "aggregator": lambda: _aggregator(settings),
               "inference": lambda: _inference(settings), "bridge": lambda: _bridge(settings, bridge_client),
               "scoring": lambda: _scoring(settings, score)}
    grants = {role_user(r): by_role[r]() for r in roles}
    for tenant, models in (tenants or {}).items():
        if tenant == bridge_client:  # its reply prefix would be the bridge's
            raise BadRequest(f"invalid tenant name {tenant!r}: the bridge's reply topics use it",
                             tenant=tenant)
        grants[tenant_user(tenant)] = _tenant(settings, tenant, models)
    return Plan(grants=grants)


def _mechanism(settings: Settings) -> ScramMechanism:
    if settings.sasl_mechanism == "SCRAM-SHA-512":
        return ScramMechanism.SCRAM_SHA_512
    return ScramMechanism.SCRAM_SHA_256


def credentials_file(state_dir: Path, user: str) -> Path:
    return state_dir / "credentials" / f"{user}.env"


def user_env(state_dir: Path, user: str) -> dict[str, str]:
    """The ``AIAAS_*`` login of ``user`` that ``aiaas acl apply`` wrote; NotFound in one line if none."""
    path = credentials_file(state_dir, user)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(f"no Kafka credentials for {user} ({path}); run aiaas acl apply as the admin "
                       "(docs/operations.md, 'Access control')", user=user) from None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def login_as(settings: Settings, user: str) -> Settings:
    """``settings`` with ``user``'s login (and, for a tenant, its client id: its reply topics)."""
    env = user_env(settings.state_dir, user)
    update: dict[str, Any] = {"sasl_username": env["AIAAS_SASL_USERNAME"],
                              "sasl_password": SecretStr(env["AIAAS_SASL_PASSWORD"])}
    if "AIAAS_CLIENT_ID" in env:
        update["client_id"] = env["AIAAS_CLIENT_ID"]
    return settings.model_copy(update=update)


class Credentials:
    """Users' passwords under ``<state dir>/credentials/<user>.env`` (0600), as ``AIAAS_*`` lines a
    process can load: a user's password is made once and reused, so ``apply`` is idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = settings.state_dir / "credentials"

    def path(self, user: str) -> Path:
        return credentials_file(self.settings.state_dir, user)

    def password(self, user: str) -> str:
        path = self.path(user)
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("AIAAS_SASL_PASSWORD="):
                    return line.split("=", 1)[1]
        password = secrets.token_urlsafe(24)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        mech = self.settings.sasl_mechanism or "SCRAM-SHA-256"
        lines = [f"AIAAS_SECURITY_PROTOCOL={self.settings.security_protocol}", f"AIAAS_SASL_MECHANISM={mech}",
                 f"AIAAS_SASL_USERNAME={user}", f"AIAAS_SASL_PASSWORD={password}"]
        if user.startswith("tenant-"):
            lines.append(f"AIAAS_CLIENT_ID={user.removeprefix('tenant-')}")  # reply topics replies.<tenant>-*
        path.touch(mode=0o600)
        path.write_text("\n".join(lines) + "\n")
        return password


class AclAdmin:
    """Users and ACLs through an admin client that runs as a super user (the broker's admin)."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    async def _send(self, req: Any) -> Any:
        """Any broker takes these (KRaft forwards them to the controller): the admin's inner client
        (the one pinned private attribute, aiaas.streams.metadata) sends to a random one."""
        client = kafka_client_of(self.admin.client)
        node = client.get_random_node()
        if node is None:
            await client.force_metadata_update()
            node = client.get_random_node()
        return await client.send(node, req)

    async def create_users(self, users: dict[str, str]) -> None:
        req = AlterUserScramCredentials(users, _mechanism(self.admin.settings))
        resp = await self.admin.call("creating SCRAM users", lambda: self._send(req))
        for user, code, message, _ in resp.results:
            _check(code, message, f"creating user {user}")

    async def create(self, bindings: list[Binding]) -> None:
        req = CreateAcls(bindings)
        resp = await self.admin.call("creating ACLs", lambda: self._send(req))
        for binding, (code, message) in zip(bindings, resp.creation_responses, strict=True):
            what = f"creating ACL {binding[3]} {Operation(binding[5]).name} {binding[1]}"
            _check(code, message, what)

    async def apply(self, p: Plan, creds: Credentials) -> int:
        """Create the plan's ACLs, then its users; returns the number of bindings. ACLs first: a
        broker without an authorizer refuses them, and then no user nor credentials file is made."""
        bindings = p.bindings()
        await self.create(bindings)
        await self.create_users({user: creds.password(user) for user in p.grants})
        return len(bindings)

    async def list(self) -> list[Grant]:
        req = describe_all()
        resp = await self.admin.call("describing ACLs", lambda: self._send(req))
        _check(resp.error_code, resp.error_message, "describing ACLs")
        found = [Grant(principal=a[0], resource=ResourceType(r[0]).name, name=r[1],
                       pattern=PatternType(r[2]).name, operation=Operation(a[2]).name,
                       permission=Permission(a[3]).name)
                 for r in resp.resources for a in r[3]]
        return sorted(found, key=lambda g: (g.principal, g.name, g.operation))


def _check(code: int, message: str | None, what: str) -> None:
    if code == SECURITY_DISABLED:
        raise AiaasError(f"{what} failed: the broker has no authorizer (authorizer.class.name); start one "
                         "with infra/kafka/sasl-broker.sh start --acl (docs/operations.md, 'Access control')",
                         code=ErrorCode.BAD_REQUEST, kafka_error="SecurityDisabledError")
    if code:
        err = for_code(code)
        cls = Forbidden if "Authorization" in err.__name__ else AiaasError
        why = f"{err.__name__}: {message}" if message else err.__name__
        raise cls(f"{what} failed: {why}", kafka_error=err.__name__)

