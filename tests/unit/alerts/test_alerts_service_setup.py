"""The alerts service's start-up refusals and its notification grouping (no services needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts import service as alerts_service
from alerts.lifecycle import Transition
from vigil.config import EXAMPLE_CONFIG, AlertConfig, VigilConfig
from vigil.contracts import Alert
from vigil.influx import InfluxSink


def test_bad_routing_refuses_to_start_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "plant.toml"
    bad.write_text(
        Path(EXAMPLE_CONFIG).read_text()
        + '\n[[alerts.receivers]]\ntype = "webhook"\nname = "planners"\nurl = "https://hooks.example/x"\n'
        + 'secret = "whsec_short"\n\n[[alerts.routes]]\nreceiver = "nobody"\n'
    )
    assert alerts_service.main(["--config", str(bad), "--metrics-port", "-1"]) == 2
    err = capsys.readouterr().err
    assert "alerts.receivers[0].secret" in err


def test_unknown_receiver_in_a_route_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "plant.toml"
    bad.write_text(
        Path(EXAMPLE_CONFIG).read_text()
        + '\n[[alerts.receivers]]\ntype = "webhook"\nname = "planners"\nurl = "https://hooks.example/x"\n'
        + '\n[[alerts.routes]]\nreceiver = "nobody"\n'
    )
    assert alerts_service.main(["--config", str(bad), "--metrics-port", "-1"]) == 2
    assert "alerts.routes[0].receiver: unknown receiver 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize(("group_by", "groups"), [("machine", 2), ("line", 1)])
def test_notifications_are_grouped(example_config: VigilConfig, group_by: str, groups: int) -> None:
    config = example_config.model_copy(
        update={"alerts": AlertConfig.model_validate({"group_by": group_by, "http_port": 0})}
    )
    service = alerts_service.AlertService(config)  # no I/O until setup()
    service.sink = InfluxSink(config.influx)  # buffers only
    t = datetime(2026, 11, 26, tzinfo=UTC)
    transitions = [
        Transition(
            Alert(
                alert_id=f"{m}.failure_risk.x",
                machine_id=m,
                line="north-1",
                site="north",
                alert_kind="failure_risk",
                state="open",
                severity="warning",
                ts=t,
                opened_at=t,
                summary="risk",
            ),
            ("planners",),
        )
        for m in ("PMP-001", "PMP-002")
    ]
    service._add(transitions)
    notes = service._notifications()
    assert len(notes) == groups and sum(len(n.alerts) for n in notes) == 2
    if group_by == "line":
        assert notes[0].group == "north-1" and notes[0].title().startswith("[WARNING] 2 alert transitions on north-1")
    assert len(service.sink) == 0, "a transition's InfluxDB point is recorded with the batch, not buffered"
    assert [a.machine_id for a in service._pending.alerts] == ["PMP-001", "PMP-002"]
