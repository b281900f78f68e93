"""The backtest agrees with the live pipeline: the same history replayed through the real services (Kafka, the
feature worker, the model service, the alert service, InfluxDB) and through ``vigil backtest`` opens the same
alert episodes, episode by episode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backtest.cli import maintenance as read_maintenance
from backtest.cli import readings as read_readings
from backtest.run import Settings, run
from tests.generators import pumps
from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import KafkaSettings, Topics, load_config
from vigil.contracts import Alert, AlertState
from vigil.testing import consume, read_all, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    out = tmp_path / "plant"
    assert pumps.main(["--out", str(out), "--seed", "11", "--machines", "3", "--days", "3"]) == 0
    return out


SERVICES = ("alerts", "models", "features")


def _groups(unique: str) -> dict[str, str]:
    """Consumer groups of this test's own (the defaults are shared with every other run on the broker)."""
    return {name: f"{name}-{unique}" for name in SERVICES}


def _joined(kafka: KafkaSettings, groups: list[str]) -> bool:
    """Every group has a member with partitions assigned: what is produced now is read as it comes."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka.client_kwargs(), client_id="vigil-test-groups")
    try:
        described = admin.describe_groups(groups)
    finally:
        admin.close()
    return all(
        g["group_state"] == "Stable"
        and any(
            a["partitions"]
            for m in g["members"]
            if m["member_assignment"]
            for a in m["member_assignment"]["assigned_partitions"]
        )
        for g in described.values()
    )


def _caught_up(kafka: KafkaSettings, group: str, topics: list[str]) -> bool:
    """``group`` has committed up to the end of ``topics`` (a transaction's commit marker may take the last offset)."""
    from kafka import KafkaAdminClient, TopicPartition

    from vigil.bus import make_consumer

    admin = KafkaAdminClient(**kafka.client_kwargs(), client_id="vigil-test-groups")
    consumer = make_consumer(kafka, None)
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(tps)
    finally:
        admin.close()
        consumer.close(autocommit=False)
    return all(ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp] - 1) for tp in tps)


@pytest.fixture
def services(
    plant: Path, kafka_settings: KafkaSettings, influx_url: str, topics: Topics, unique: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_TOPICS__")}
    env.update({f"VIGIL_TOPICS__{k.upper()}": str(v) for k, v in topics.model_dump().items() if isinstance(v, str)})
    env.update(
        {
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "VIGIL_INFLUX__URL": influx_url,
            "VIGIL_INFLUX__DATABASE": f"agree_{unique}",
            "VIGIL_ALERTS__HTTP_PORT": "0",
            "VIGIL_ALERTS__OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
            "VIGIL_WINDOWS__MAX_CLOCK_SKEW_S": "inf",
            "VIGIL_SPOOL__PATH": str(tmp_path / "spool" / "ingest.sqlite"),
            "VIGIL_METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    config = ["--config", str(plant / "plant.toml")]
    procs: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    # The topics exist before the services subscribe: a model service whose group formed before its input topics
    # had partitions was seen to stay assigned nothing for minutes (under a heavy load).
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    groups = _groups(unique)
    env["VIGIL_WINDOWS__GROUP_ID"] = groups["features"]
    for name in SERVICES:
        argv = [sys.executable, "-m", "vigil.cli", name, *config]
        if name != "features":
            argv += ["--group", groups[name]]
        with (logs / f"{name}.log").open("wb") as log:
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=ROOT))
    # The consumers have joined their groups before anything is produced (the replay is paced: a worker that
    # joined late would take a burst, and a label could reach the models before the window it follows).
    wait_for(lambda: _joined(kafka_settings, list(groups.values())), 120, "the services' consumers joined")
    try:
        yield env
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for p, name in zip(procs, SERVICES, strict=True):
            if p.returncode not in (0, -15):
                print(name, (logs / f"{name}.log").read_text()[-3000:])


def _opened(alerts: list[Alert]) -> set[tuple[str, str, str]]:
    return {
        (a.alert_id, a.machine_id, a.alert_kind)
        for a in alerts
        if a.state in (AlertState.OPEN, AlertState.INHIBITED, AlertState.SILENCED)
    }


@pytest.mark.timeout(900)
def test_the_backtest_opens_the_episodes_the_live_pipeline_opens(
    plant: Path, services: dict[str, str], kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    config = load_config(plant / "plant.toml", environ={})
    events, _ = read_maintenance(config, config.sources.maintenance[0], [plant / "workorders.csv"])
    _, frames = read_readings(config, config.sources.file[0], [plant / "historian.csv"])
    bt = run(config, frames, events, Settings())
    expected_windows = bt.windows
    backtest = {(e.alert_id, e.machine_id, e.kind) for e in bt.methods["vigil"].episodes.values()}
    assert backtest, "the history must give the comparison something to compare"

    # The same files through the real services, paced so that a window of event time is ~0.25 s of wall time.
    replay = subprocess.run(
        [
            sys.executable, "-m", "vigil.cli", "collect", "replay", "historian.csv",
            "--config", "plant.toml", "--maintenance", "workorders.csv", "--speed", "2400",
        ],
        cwd=plant, env=services, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-3000:]
    summary = json.loads(replay.stdout.strip().splitlines()[-1])
    assert summary["replay"].get("maintenance", 0) == len(events) > 0

    # Every window predicted but each machine's last (the live worker closes it on the wall clock, ~2 min after
    # the end; the comparison leaves the final hour out), or the stream has stopped growing for 30 s.
    seen: list[int] = []
    closed_by_event_time = expected_windows - len(config.machines)

    def done(got: list[int]) -> bool:
        seen.append(len(got))
        return len(got) >= closed_by_event_time or (len(seen) > 300 and seen[-300] == len(got) > 0)

    predicted = consume(
        kafka_settings, [topics.predictions], until=done, map=lambda r: r.offset, timeout_s=200, settle_s=3
    )
    print(f"windows: backtest {expected_windows}, live predictions {len(predicted)}")
    # Every transition the alert service made of those predictions is on the alerts topic once its group has
    # committed them (transitions and offsets commit in one transaction).
    wait_for(
        lambda: _caught_up(
            kafka_settings,
            _groups(unique)["alerts"],
            [topics.predictions, topics.drift, topics.features, topics.maintenance],
        ),
        120,
        "the alert service read every prediction",
    )
    alerts = [m for m in read_all(kafka_settings, [topics.alerts]) if isinstance(m, Alert)]
    opened = _opened(alerts)
    # Episode by episode; the last window of each machine may differ (the live worker closes it on the wall
    # clock after the replay ends, the backtest at the end of the file), so episodes in the final hour are left out.
    end = bt.end - 3600
    only_backtest = {e for e in backtest if bt.methods["vigil"].episodes[e[0]].opened_at.timestamp() < end} - opened
    only_live = {e for e in opened if e[0] not in bt.methods["vigil"].episodes} - {
        e for e in opened if e[0].rsplit(".", 1)[-1] >= time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(end))
    }
    assert not only_backtest and not only_live, (sorted(only_backtest), sorted(only_live))
