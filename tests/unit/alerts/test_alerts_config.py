"""Invalid receiver or routing configuration is refused at start-up, naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.config import VigilConfig, load_config
from vigil.exceptions import ConfigError

GOOD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def with_alerts(example_config: VigilConfig, alerts: dict[str, Any]) -> dict[str, Any]:
    data = example_config.model_dump(mode="json", exclude={"alerts"})
    data["alerts"] = alerts
    return data


def problems(example_config: VigilConfig, alerts: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(data=with_alerts(example_config, alerts), environ={})
    return info.value.problems


def hook(name: str = "planners", **kw: Any) -> dict[str, Any]:
    return {"type": "webhook", "name": name, "url": "https://hooks.example/x", **kw}


def test_a_valid_alert_configuration_loads(example_config: VigilConfig) -> None:
    alerts = {
        "receivers": [
            hook(secret=GOOD_SECRET),
            {"type": "chat", "name": "teams", "url": "https://teams.example/x", "flavor": "teams"},
            {"type": "email", "name": "mail", "host": "smtp.example", "sender": "v@x.example", "to": ["p@x.example"]},
        ],
        "routes": [{"receiver": "planners", "sites": ["north"], "escalate_to": "mail", "escalate_after_s": 900}],
        "silences": [{"machines": ["PMP-001"], "starts_at": "2026-12-01T06:00:00Z", "ends_at": "2026-12-01T14:00:00Z"}],
    }
    config = load_config(data=with_alerts(example_config, alerts), environ={})
    assert config.alerts.routes[0].escalate_to == "mail"


@pytest.mark.parametrize(
    ("alerts", "key", "reason"),
    [
        ({"receivers": [hook(secret="not-a-secret")]}, "alerts.receivers[0].secret", "whsec_"),
        ({"receivers": [hook(secret="whsec_***")]}, "alerts.receivers[0].secret", "base64"),
        ({"receivers": [hook(url="ftp://x")]}, "alerts.receivers[0].url", "should match"),
        ({"receivers": [hook()], "routes": [{"receiver": "nobody"}]}, "alerts.routes[0].receiver", "unknown receiver"),
        (
            {
                "receivers": [hook()],
                "routes": [{"receiver": "planners", "escalate_to": "boss", "escalate_after_s": 60}],
            },
            "alerts.routes[0].escalate_to",
            "unknown receiver",
        ),
        (
            {"receivers": [hook()], "routes": [{"receiver": "planners", "sites": ["mars"]}]},
            "alerts.routes[0].sites",
            "mars",
        ),
        ({"receivers": [hook(), hook()]}, "alerts.receivers[1]", "duplicate"),
        (
            {"receivers": [{"type": "email", "name": "m", "host": "h", "sender": "v@x.example", "to": ["nobody"]}]},
            "alerts.receivers[0].to",
            "not an e-mail address",
        ),
        (
            {
                "receivers": [
                    {"type": "email", "name": "m", "host": "h", "sender": "v@x.example", "to": ["a@b"], "username": "u"}
                ]
            },
            "alerts.receivers[0]",
            "username and password go together",
        ),
        (
            {"silences": [{"starts_at": "2026-12-01T06:00:00Z", "ends_at": "2026-12-01T14:00:00Z"}]},
            "alerts.silences[0]",
            "at least one",
        ),
        ({"open_threshold": 0.4, "close_threshold": 0.6}, "alerts", "close_threshold"),
        (
            {"receivers": [{"type": "smtp", "name": "m"}]},
            "alerts.receivers[0]",
            "type must be 'webhook', 'chat' or 'email'",
        ),
    ],
)
def test_bad_alert_configuration_names_the_key(
    example_config: VigilConfig, alerts: dict[str, Any], key: str, reason: str
) -> None:
    found = problems(example_config, alerts)
    assert any(path == key and reason in msg for path, msg in found), found


def test_escalating_to_the_same_receiver_is_refused(example_config: VigilConfig) -> None:
    found = problems(
        example_config,
        {
            "receivers": [hook()],
            "routes": [{"receiver": "planners", "escalate_to": "planners", "escalate_after_s": 60}],
        },
    )
    assert any(path == "alerts.routes[0]" and "different receiver" in msg for path, msg in found), found
