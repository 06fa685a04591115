"""aiokafka private API: used in exactly one place (aiaas.streams.metadata.kafka_client_of, the admin
client's inner AIOKafkaClient), and the aiokafka installed still has it. Why it is used at all is
in streams/metadata.py; tests/integration/test_metadata.py checks what it gives on the real broker."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import aiokafka
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.cluster import ClusterMetadata

from aiaas.streams.metadata import kafka_client_of
from tests.sourceparse import parse

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "streams" / "metadata.py"


async def test_the_wrapped_private_attribute_is_still_there() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:1")  # no I/O before start()
    try:
        assert isinstance(kafka_client_of(admin), AIOKafkaClient)
        assert kafka_client_of(admin) is kafka_client_of(admin)  # the admin's own, not a new one
    finally:
        await admin.close()
    # the pin in pyproject.toml (<0.15): an upgrade re-reads streams/metadata.py and this test
    assert aiokafka.__version__.startswith("0.14."), aiokafka.__version__


def _private_names() -> set[str]:
    """``_x`` names that aiokafka's client, producer, consumer, admin and cluster metadata define
    (methods, and attributes set on ``self`` in their source)."""
    names: set[str] = set()
    for cls in (AIOKafkaClient, AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient, ClusterMetadata):
        for c in cls.__mro__:
            names |= set(vars(c))
        for node in ast.walk(parse(inspect.getsource(cls))):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "self":
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_other_module_reaches_into_aiokafka() -> None:
    private = _private_names()
    assert "_metadata_update" in private and "_coordinator" in private  # the scan sees aiokafka's
    uses = []
    for pkg in ("streams", "agents", "aiaas", "benchmarks"):  # aiaas/ holds cli, client, ml, data...
        for path in sorted((ROOT / pkg).rglob("*.py")):  # rglob does not enter aiaas/'s links
            for node in ast.walk(parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Attribute) and node.attr in private
                        and ast.unparse(node.value) not in ("self", "cls")):
                    uses.append(f"{path.relative_to(ROOT)}: {ast.unparse(node)}")
    assert uses == ["streams/metadata.py: admin._client"]
