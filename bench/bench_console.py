"""Page latency of the planners' console, against the real alerts service, Kafka and InfluxDB.

    python bench/bench_console.py            # 1,000 machines, 30 days of 10-min predictions, 200 open episodes
    python bench/bench_console.py --smoke    # tiny, to check it runs

The plant: 1,000 pumps on 20 lines at 4 sites. InfluxDB gets 30 days of predictions for every machine (one per
10-minute window: 4.32 million points, written directly as line protocol), and the feature windows and
contributions of the machines whose page is measured. 200 machines then get two predictions above the threshold
through Kafka, so the alerts service opens 200 episodes the usual way. Each page is then fetched ``--repeat``
times, one request at a time, as a browser would (HTML only; the Machine page's chart data is in the page):
Now, its live table, Fleet, Machine (3 and 30 days), Episode, Quality. Prints p50/p95/max per page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.service import AlertService
from vigil.bus import machine_key, make_producer
from vigil.config import AlertConfig, VigilConfig, load_config
from vigil.contracts import Contribution, Prediction, encode
from vigil.influx import InfluxSink

STEP = timedelta(minutes=10)


def plant(example: VigilConfig, machines: int) -> VigilConfig:
    sites = [{"id": f"site-{s}"} for s in range(4)]
    lines = [{"id": f"line-{i:02d}", "site": f"site-{i % 4}"} for i in range(20)]
    ms = [{"id": f"PMP-{i:04d}", "type": "pump", "line": f"line-{i % 20:02d}"} for i in range(machines)]
    data = example.model_dump(mode="json", exclude={"sites", "lines", "machines", "sources"})
    return VigilConfig.model_validate({**data, "sites": sites, "lines": lines, "machines": ms})


def fill_influx(sink: InfluxSink, config: VigilConfig, days: float, end: datetime, detailed: list[str]) -> int:
    n = int(days * 86400 / STEP.total_seconds())
    written = 0
    for m in config.machines_by_id.values():
        tags = f"machine={m.id},type={m.type},site={m.site},line={m.line}"
        lines = []
        for k in range(n):
            ts = end - (n - k) * STEP
            ns = int(ts.timestamp()) * 1_000_000_000
            p = 0.05 + 0.3 * ((k * 7 + hash(m.id)) % 100) / 100
            lines.append(
                f"predictions,{tags},model=logistic p_failure={p:.4f},anomaly_score={p * 2:.4f},"
                f'anomaly_threshold=1.0,threshold=0.5,decision="ok",decided_by="model",cold_start=false {ns}'
            )
            if m.id in detailed:
                lines.append(
                    f'features,{tags} bearing_temp.mean={70 + 10 * p:.3f},vibration_rms.max={4 + 2 * p:.3f},state="running" {ns}'
                )
                for rank, f in enumerate(("bearing_temp.mean", "vibration_rms.max"), start=1):
                    lines.append(
                        f"contributions,{tags},model=logistic,feature={f} value=1.0,normal=1.0,contribution={p / rank:.3f},rank={rank}i {ns}"
                    )
        if m.id not in detailed:  # every machine's operating state, as the feature worker writes it
            lines.append(f'features,{tags} state="running" {int((end - STEP).timestamp()) * 1_000_000_000}')
        sink.add_all(lines)
        written += len(lines)
        if len(sink) >= 50_000:
            sink.flush()
    sink.flush()
    return written


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=60) as resp:
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--open", type=int, default=200, help="open episodes")
    parser.add_argument("--repeat", type=int, default=40, help="requests per page")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the InfluxDB database (its name is printed)")
    parser.add_argument("--reuse", default=None, help="a database kept by --keep with the same sizes: no writing")
    args = parser.parse_args()
    if args.smoke:
        args.machines, args.days, args.open, args.repeat = 20, 1.0, 5, 3
    example = load_config(None)
    run = uuid.uuid4().hex[:8]
    influx_url = os.environ.get("VIGIL_INFLUX__URL", example.influx.url)
    db = args.reuse or f"bench_console_{run}"
    server = InfluxSink(example.influx.model_copy(update={"url": influx_url, "database": db}))
    server.query(f'CREATE DATABASE "{db}"')
    topics = example.topics.model_copy(
        update={
            k: f"bench-console-{run}.{k}"
            for k in ("readings", "maintenance", "features", "predictions", "drift", "alerts", "dead_letter", "audit")
        }
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = plant(example, args.machines)
            alerts = AlertConfig.model_validate(
                {"http_port": 0, "outbox_path": str(Path(tmp) / "outbox.sqlite3"), "open_after": 2}
            )
            influx = example.influx.model_copy(update={"url": influx_url, "database": db})
            config = config.model_copy(update={"alerts": alerts, "influx": influx, "topics": topics})
            end = datetime.now(UTC).replace(second=0, microsecond=0)
            ids = sorted(config.machines_by_id)
            detailed = ids[:10]
            if args.reuse is None:
                started = time.perf_counter()
                points = fill_influx(InfluxSink(influx), config, args.days, end, detailed)
                print(f"InfluxDB: {points:,} points written in {time.perf_counter() - started:.0f} s")

            service = AlertService(config, group_id=f"bench-console-{run}")
            service.setup()
            stop = threading.Event()
            loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
            loop.start()
            try:
                producer = make_producer(config.kafka)
                for m in ids[: args.open]:
                    r = config.machines_by_id[m]
                    for k in range(2):
                        pred = Prediction(
                            machine_id=m,
                            machine_type="pump",
                            site=r.site,
                            line=r.line,
                            ts=end + k * STEP,
                            model="logistic",
                            p_failure=0.9,
                            horizon_s=172800.0,
                            decision="alert",
                            decided_by="model",
                            contributions=(
                                Contribution(feature="bearing_temp.mean", value=96, normal=70, contribution=1.5),
                            ),
                        )
                        producer.send(topics.predictions, key=machine_key(m), value=encode(pred))
                producer.flush(timeout=60)
                producer.close()
                deadline = time.monotonic() + 300
                while len(service.view.episodes) < args.open and time.monotonic() < deadline:
                    time.sleep(0.5)
                print(f"open episodes: {len(service.view.episodes)}")
                url = service.ack_url
                episodes = [e["alert_id"] for e in service.view.episodes]
                pages = {
                    "Now (/)": lambda i: f"{url}/",
                    "Now live table": lambda i: f"{url}/now/table",
                    "Fleet": lambda i: f"{url}/fleet",
                    "Machine, 3 days": lambda i: f"{url}/machines/{detailed[i % len(detailed)]}?days=3",
                    "Machine, 30 days": lambda i: f"{url}/machines/{detailed[i % len(detailed)]}?days=30",
                    "Episode": lambda i: f"{url}/episodes/{episodes[i % len(episodes)]}",
                    "Quality": lambda i: f"{url}/quality",
                }
                print(f"{'page':<18} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  (n={args.repeat} each, sequential)")
                for name, make in pages.items():
                    times = sorted(timed_get(make(i)) * 1000 for i in range(args.repeat))
                    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                    print(f"{name:<18} {statistics.median(times):8.0f} {p95:8.0f} {times[-1]:8.0f}")
            finally:
                stop.set()
                loop.join(timeout=30)
                service.close()
    finally:
        if args.keep or args.reuse:
            print(f"kept InfluxDB database {db}")
        else:
            server.query(f'DROP DATABASE "{db}"')


if __name__ == "__main__":
    main()
