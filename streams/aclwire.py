"""The Kafka admin requests behind access control that aiokafka's admin client lacks (0.14 has no
``create_acls`` nor user SCRAM credentials): CreateAcls with many bindings per request,
DescribeAcls, DeleteAcls and AlterUserScramCredentials (KIP-554), built on aiokafka's protocol
types and sent through its admin client's connection. The SCRAM salted password is computed here
(RFC 5802: PBKDF2-HMAC), so the password itself never travels to the broker.
"""

from __future__ import annotations

import hashlib
import os
from enum import IntEnum
from typing import Any

from aiokafka.protocol.admin import DescribeAclsRequest, DescribeAclsResponse_v1
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)

SCRAM_ITERATIONS = 8192


class ResourceType(IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class Permission(IntEnum):
    ANY = 1
    DENY = 2
    ALLOW = 3


class ScramMechanism(IntEnum):
    SCRAM_SHA_256 = 1
    SCRAM_SHA_512 = 2


Binding = tuple[int, str, int, str, str, int, int]  # type, name, pattern, principal, host, op, permission


class _CreateAclsResponse(Response):  # type: ignore[misc]
    API_KEY = 30
    API_VERSION = 1
    SCHEMA = Schema(("throttle_time_ms", Int32),
                    ("creation_responses", Array(("error_code", Int16), ("error_message", String("utf-8")))))


class _CreateAclsStruct(RequestStruct):  # type: ignore[misc]
    API_KEY = 30
    API_VERSION = 1
    RESPONSE_TYPE = _CreateAclsResponse
    SCHEMA = Schema(("creations", Array(
        ("resource_type", Int8), ("resource_name", String("utf-8")), ("resource_pattern_type", Int8),
        ("principal", String("utf-8")), ("host", String("utf-8")), ("operation", Int8),
        ("permission_type", Int8))))


class CreateAcls(Request[_CreateAclsStruct]):  # type: ignore[misc]
    """Every binding in one request (aiokafka's own CreateAclsRequest carries one)."""

    API_KEY = 30

    def __init__(self, bindings: list[Binding]) -> None:
        self.bindings = bindings

    def build(self, request_struct_class: type[_CreateAclsStruct]) -> _CreateAclsStruct:
        return request_struct_class(self.bindings)


class _DeleteAclsResponse(Response):  # type: ignore[misc]
    API_KEY = 31
    API_VERSION = 1
    SCHEMA = Schema(("throttle_time_ms", Int32), ("filter_responses", Array(
        ("error_code", Int16), ("error_message", String("utf-8")), ("matching_acls", Array(
            ("error_code", Int16), ("error_message", String("utf-8")), ("resource_type", Int8),
            ("resource_name", String("utf-8")), ("resource_pattern_type", Int8),
            ("principal", String("utf-8")), ("host", String("utf-8")), ("operation", Int8),
            ("permission_type", Int8))))))


class _DeleteAclsStruct(RequestStruct):  # type: ignore[misc]
    API_KEY = 31
    API_VERSION = 1
    RESPONSE_TYPE = _DeleteAclsResponse
    SCHEMA = _CreateAclsStruct.SCHEMA  # same fields, read as filters


class DeleteAcls(Request[_DeleteAclsStruct]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, filters: list[Binding]) -> None:
        self.filters = filters

    def build(self, request_struct_class: type[_DeleteAclsStruct]) -> _DeleteAclsStruct:
        return request_struct_class(self.filters)


class _AlterScramResponse(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(("throttle_time_ms", Int32), ("results", CompactArray(
        ("user", CompactString("utf-8")), ("error_code", Int16), ("error_message", CompactString("utf-8")),
        ("tags", TaggedFields))), ("tags", TaggedFields))


class _AlterScramStruct(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(
            ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        ("upsertions", CompactArray(
            ("name", CompactString("utf-8")), ("mechanism", Int8), ("iterations", Int32),
            ("salt", CompactBytes), ("salted_password", CompactBytes), ("tags", TaggedFields))),
        ("tags", TaggedFields))


class AlterUserScramCredentials(Request[_AlterScramStruct]):  # type: ignore[misc]
    """Upsert SCRAM credentials: ``users`` maps a user name to its password."""

    API_KEY = 51

    def __init__(self, users: dict[str, str], mechanism: ScramMechanism) -> None:
        self.upsertions = [_upsertion(name, pw, mechanism) for name, pw in users.items()]

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class([], self.upsertions, {})


def _upsertion(name: str, password: str, mechanism: ScramMechanism) -> tuple[Any, ...]:
    """One user's upsertion: a fresh salt and the salted password (RFC 5802's Hi())."""
    digest = "sha256" if mechanism == ScramMechanism.SCRAM_SHA_256 else "sha512"
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
    return (name, int(mechanism), SCRAM_ITERATIONS, salt, salted, {})


def describe_all() -> DescribeAclsRequest:
    """A DescribeAcls that matches every binding on the cluster."""
    return DescribeAclsRequest(ResourceType.ANY, None, PatternType.ANY, None, None,
                               Operation.ANY, Permission.ANY)


__all__ = ["AlterUserScramCredentials", "Binding", "CreateAcls", "DeleteAcls", "DescribeAclsResponse_v1",
           "Operation", "PatternType", "Permission", "ResourceType", "ScramMechanism", "describe_all"]
