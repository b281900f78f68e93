"""Throughput of the alerts stage's parts, against the real InfluxDB ``vigil services up`` started.

Run by hand (never in the test suite)::

    python bench/bench_alerts.py            # 200k points, 100k predictions, 2k notifications
    python bench/bench_alerts.py --smoke    # tiny, to check it runs

Stages, each timed alone:

* ``line protocol``: :class:`Schema` points -> line protocol strings (per prediction: prediction + 3 contributions);
* ``influx write``: :class:`InfluxSink` flushes of those lines to InfluxDB 1.x (v1 API, gzip, 5,000-line batches),
  until every line is acknowledged;
* ``lifecycle``: :meth:`Lifecycle.observe` of predictions for 12 machines (with episodes opening and resolving);
* ``outbox``: notifications committed to sqlite and delivered to a local HTTP receiver (signed webhooks).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import SecretStr

from alerts.lifecycle import Lifecycle, PlantInfo
from alerts.outbox import Outbox
from alerts.receivers import WebhookSender
from alerts.render import Notification
from alerts.store import AlertStore, notification_id
from vigil.config import AlertConfig, InfluxSettings, WebhookReceiver
from vigil.contracts import Alert, Contribution, Prediction
from vigil.influx import InfluxSink, MachineTags, Schema

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MACHINES = [f"PMP-{i:03d}" for i in range(1, 13)]
TAGS = {m: MachineTags("pump", "north", "north-1") for m in MACHINES}


def predictions(n: int) -> list[Prediction]:
    out = []
    for i in range(n):
        k = i // len(MACHINES)
        p = 0.8 if k % 50 in range(10, 14) else 0.1
        out.append(
            Prediction(
                machine_id=MACHINES[i % len(MACHINES)],
                machine_type="pump",
                ts=T0 + timedelta(minutes=10 * k),
                model="logistic",
                p_failure=p,
                horizon_s=172800.0,
                contributions=tuple(
                    Contribution(feature=f"s{j}.mean", value=1.0 + j, normal=1.0, contribution=0.1 * j)
                    for j in range(3)
                ),
            )
        )
    return out


def rate(label: str, n: int, seconds: float, unit: str) -> None:
    print(f"{label:<16} {n:>9,} {unit:<14} {seconds:8.2f} s  {n / seconds:>12,.0f} {unit}/s")


def bench_influx(url: str, preds: list[Prediction]) -> None:
    schema = Schema(TAGS)
    t = time.perf_counter()
    lines = [line for p in preds for pt in schema.points(p) if (line := pt.line()) is not None]
    rate("line protocol", len(lines), time.perf_counter() - t, "lines")
    db = f"bench_{uuid.uuid4().hex[:8]}"
    query = f"{url}/query"
    urllib.request.urlopen(query, data=urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'}).encode()).read()
    try:
        sink = InfluxSink(InfluxSettings(url=url, database=db))
        sink.setup()
        t = time.perf_counter()
        for line in lines:
            sink.add(line)
        sink.flush()
        rate("influx write", len(lines), time.perf_counter() - t, "lines")
        print(f"{'':<16} {sink.stats.requests} requests, {sink.stats.retries} retries, {sink.stats.rejected} rejected")
    finally:
        urllib.request.urlopen(query, data=urllib.parse.urlencode({"q": f'DROP DATABASE "{db}"'}).encode()).read()


def bench_lifecycle(preds: list[Prediction]) -> None:
    life = Lifecycle(AlertConfig(open_after=2), PlantInfo(machines=TAGS))
    t = time.perf_counter()
    transitions = 0
    for p in preds:
        transitions += len(life.observe(p, 0.0))
    rate("lifecycle", len(preds), time.perf_counter() - t, "predictions")
    print(f"{'':<16} {transitions} transitions")


def bench_outbox(n: int) -> None:
    received = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received[0] += 1
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        store = AlertStore(Path(tmp) / "outbox.sqlite3")
        store.open()
        notes = []
        for i in range(n):
            a = Alert(
                alert_id=f"PMP-001.failure_risk.{i}",
                machine_id="PMP-001",
                alert_kind="failure_risk",
                state="open",
                severity="warning",
                ts=T0,
                opened_at=T0,
                summary="bench",
            )
            notes.append(Notification(notification_id("hook", [a]), "hook", "PMP-001", (a,), "http://x"))
        t = time.perf_counter()
        for i in range(0, n, 100):
            store.commit({}, None, notes[i : i + 100], 0.0)
        rate("outbox commit", n, time.perf_counter() - t, "notifications")
        url = f"http://127.0.0.1:{server.server_port}/hook"
        secret = SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        outbox = Outbox(store, {"hook": WebhookSender(WebhookReceiver(name="hook", url=url, secret=secret))})
        t = time.perf_counter()
        while store.stats()["pending"]:
            outbox.drain_once()
        rate("outbox deliver", received[0], time.perf_counter() - t, "webhooks")
        store.close()
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:18086")
    parser.add_argument("--predictions", type=int, default=50_000)
    parser.add_argument("--notifications", type=int, default=2_000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n_pred, n_notes = (300, 20) if args.smoke else (args.predictions, args.notifications)
    preds = predictions(n_pred)
    bench_influx(args.url, preds)
    bench_lifecycle(preds)
    bench_outbox(n_notes)


if __name__ == "__main__":
    main()
