"""Least privilege on Kafka: which topics, groups and transactional ids each Vigil service may use.

One Kafka user per service (the SCRAM user names of ``vigil services up --secure``). With the StandardAuthorizer
and ``allow.everyone.if.no.acl.found=false``, what is not listed here is refused: a collector can write readings,
dead letters and maintenance events and read nothing; only the alerts service writes alerts.

Every service may DESCRIBE and CREATE the pipeline's topics (stages create what is missing at start-up, and
listing a topic needs DESCRIBE); READ and WRITE are per service. Groups and transactional ids are granted by
prefix: a group ``vigil-features`` owns the transactional ids ``vigil-features-features-p<n>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vigil.config.connections import Topics

KAFKA_SERVICES = ("collector", "features", "models", "alerts")


@dataclass(frozen=True)
class Grant:
    """One service's rights: topics it reads, topics it writes, the prefix of its groups/transactional ids, and
    the prefix of its own state topics (``<changelog_prefix><service>``, ``...models.machines``: read and write)."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    group_prefix: str
    changelog_prefix: str = ""


def service_grants(topics: Topics) -> dict[str, Grant]:
    """The rights of every Vigil service for these topic names (the table of docs/security.md)."""
    readings = tuple(topics.reading_topics())

    def changelog(service: str) -> str:
        return f"{topics.changelog_prefix}{service}"

    return {
        "collector": Grant((), (*readings, topics.maintenance, topics.dead_letter), "vigil-collect-"),
        "features": Grant(readings, (topics.features, topics.dead_letter), "vigil-features", changelog("features")),
        "models": Grant(
            (topics.features, topics.maintenance),
            (topics.predictions, topics.drift, topics.audit, topics.dead_letter),
            "vigil-models",
            changelog("models"),
        ),
        "alerts": Grant(
            (topics.predictions, topics.drift, topics.features, topics.maintenance),
            (topics.alerts, topics.dead_letter),
            "vigil-alerts",
            changelog("alerts"),
        ),
    }


def all_topics(topics: Topics) -> list[str]:
    names = [
        *topics.reading_topics(),
        topics.maintenance,
        topics.features,
        topics.predictions,
        topics.drift,
        topics.alerts,
        topics.dead_letter,
        topics.audit,
    ]
    return list(dict.fromkeys(names))


def acl_bindings(topics: Topics) -> list[Any]:
    """kafka-python ``ACL`` objects for every service (``User:<service>``)."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    allow = ACLPermissionType.ALLOW
    out: list[Any] = []

    def add(user: str, op: Any, kind: Any, name: str, pattern: Any = ACLResourcePatternType.LITERAL) -> None:
        out.append(ACL(f"User:{user}", "*", op, allow, ResourcePattern(kind, name, pattern)))

    for user, grant in service_grants(topics).items():
        for name in all_topics(topics):
            add(user, ACLOperation.DESCRIBE, ResourceType.TOPIC, name)
            add(user, ACLOperation.CREATE, ResourceType.TOPIC, name)
        for name in grant.read:
            add(user, ACLOperation.READ, ResourceType.TOPIC, name)
        for name in grant.write:
            add(user, ACLOperation.WRITE, ResourceType.TOPIC, name)
        prefixed = ACLResourcePatternType.PREFIXED
        if grant.changelog_prefix:
            # Its own state topics: compaction settings are checked and corrected at start-up (models).
            state_ops = ("DESCRIBE", "CREATE", "READ", "WRITE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS")
            for op in (getattr(ACLOperation, name) for name in state_ops):
                add(user, op, ResourceType.TOPIC, grant.changelog_prefix, prefixed)
        add(user, ACLOperation.READ, ResourceType.GROUP, grant.group_prefix, prefixed)
        add(user, ACLOperation.DESCRIBE, ResourceType.GROUP, grant.group_prefix, prefixed)
        add(user, ACLOperation.WRITE, ResourceType.TRANSACTIONAL_ID, grant.group_prefix, prefixed)
        add(user, ACLOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, grant.group_prefix, prefixed)
    return out


def apply_acls(admin_kwargs: dict[str, object], topics: Topics) -> int:
    """Create the ACLs of every service for ``topics`` with an administrator's connection; returns how many."""
    from kafka import KafkaAdminClient

    from vigil.exceptions import ServiceError

    bindings = acl_bindings(topics)
    admin = KafkaAdminClient(**admin_kwargs, client_id="vigil-acls")
    try:
        result = admin.create_acls(bindings)
    finally:
        admin.close()
    failed = result.get("failed", [])
    if failed:
        raise ServiceError(f"creating {len(failed)} of {len(bindings)} ACLs failed: {failed[:3]}")
    return len(bindings)
