"""Least privilege: each service's Kafka rights (vigil/acls.py), the table docs/security.md documents."""

from __future__ import annotations

from vigil.acls import KAFKA_SERVICES, acl_bindings, all_topics, service_grants
from vigil.config import Topics


def test_each_topic_has_exactly_the_writers_the_pipeline_needs() -> None:
    topics = Topics(readings="t.readings", alerts="t.alerts", extra_readings=["t.more"])
    grants = service_grants(topics)
    writers = {t: sorted(s for s, g in grants.items() if t in g.write) for t in all_topics(topics)}
    assert writers["t.readings"] == writers["t.more"] == ["collector"]
    assert writers[topics.features] == ["features"]
    assert writers[topics.predictions] == writers[topics.drift] == ["models"]
    assert writers["t.alerts"] == ["alerts"]
    assert writers[topics.dead_letter] == sorted(KAFKA_SERVICES)
    assert grants["collector"].read == ()  # a compromised collector reads nothing
    assert grants["collector"].changelog_prefix == ""  # and has no state topics
    assert grants["models"].changelog_prefix == f"{topics.changelog_prefix}models"  # models and models.machines


def test_bindings_name_each_service_user_and_grant_groups_by_prefix() -> None:
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType

    bindings = acl_bindings(Topics())
    assert {b.principal for b in bindings} == {f"User:{s}" for s in KAFKA_SERVICES}
    groups = {
        (b.principal, b.resource_pattern.resource_name)
        for b in bindings
        if b.resource_pattern.resource_type == ResourceType.GROUP and b.operation == ACLOperation.READ
    }
    assert ("User:features", "vigil-features") in groups and len(groups) == len(KAFKA_SERVICES)
    assert all(
        b.resource_pattern.pattern_type == ACLResourcePatternType.PREFIXED
        for b in bindings
        if b.resource_pattern.resource_type in (ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)
    )
    alerts_writers = {
        b.principal
        for b in bindings
        if b.resource_pattern.resource_name == "vigil.alerts" and b.operation == ACLOperation.WRITE
    }
    assert alerts_writers == {"User:alerts"}
