"""Benchmark: the feature worker over SASL_SSL (SCRAM-SHA-512, TLS, ACLs) against plaintext, same run.

    python bench/bench_security.py            # full run (a minute or two)
    python bench/bench_security.py --smoke    # tiny, seconds

Needs both stacks: ``vigil services up`` (plaintext Kafka) and ``vigil services up --secure``. The same messages
(batches of readings, as the collectors publish them) are written to one partition on each broker; then one
:class:`features.service.FeatureService` reads them, alternately from the plaintext broker and from the secured one
as the ``features`` user with its ACLs, ``--repeat`` times; medians of readings/s and CPU per reading are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_streaming import count_readings, fill, messages, plant, worker  # noqa: E402
from vigil.acls import apply_acls  # noqa: E402
from vigil.bus import TopicSpec, ensure_topics  # noqa: E402
from vigil.config import KafkaSettings, Topics  # noqa: E402
from vigil.config.security import TlsSettings  # noqa: E402
from vigil.services import ServicesConfig  # noqa: E402
from vigil.services_secure import SecureConfig, SecureKafka  # noqa: E402


def secure_kafka(sc: SecureConfig, user: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=f"{sc.host}:{sc.kafka_port}",
        client_id="vigil-bench",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password=sc.secret_value(f"kafka-{user}"),
        tls=TlsSettings(ca_file=sc.pki / "ca.crt"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    parser.add_argument("--bootstrap", default=os.environ.get("VIGIL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=120, help="readings per message")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.smoke:
        args.readings, args.machines, args.repeat = 12_000, 20, 1
    sc = SecureConfig(ServicesConfig())
    if not (sc.home / "services.env").exists():
        if args.smoke:  # bench-smoke from a tree without the secured stack (CI starts it: scripts/test)
            print("skipped: the secured stack is not running (vigil services up --secure)")
            return
        sys.exit("the secured stack is not running: vigil services up --secure")
    run = uuid.uuid4().hex[:8]
    topics = Topics(
        readings=f"bench-{run}.readings",
        features=f"bench-{run}.features",
        dead_letter=f"bench-{run}.dead-letter",
        changelog_prefix=f"bench-{run}.changelog.",
    )
    plain = KafkaSettings(bootstrap_servers=args.bootstrap, client_id="vigil-bench")
    secured = secure_kafka(sc, "features")
    apply_acls(SecureKafka(sc).admin_kwargs(), topics)
    data = messages(args.machines, args.readings, args.batch, "rows")
    total = sum(count_readings(v) for _, v in data)
    for kafka, writer in ((plain, plain), (secured, secure_kafka(sc, "collector"))):
        ensure_topics(kafka, [TopicSpec(topics.readings, 1)])
        fill(writer, topics.readings, data)
    rates: dict[str, list[float]] = {"plaintext": [], "SASL_SSL": []}
    cpu: dict[str, list[float]] = {"plaintext": [], "SASL_SSL": []}
    for i in range(args.repeat):
        for name, kafka in (("plaintext", plain), ("SASL_SSL", secured)):
            windows = {"size_s": 60, "grace_s": 5, "idle_timeout_s": 3600, "group_id": f"vigil-features-{run}-{i}"}
            changelog = {"changelog_prefix": f"bench-{run}.changelog.{name}-{i}-"}
            config = plant(args.machines, windows, kafka, topics.model_copy(update=changelog))
            if name == "SASL_SSL":  # its changelog topic needs the features user's ACLs too
                apply_acls(SecureKafka(sc).admin_kwargs(), config.topics)
            elapsed, used, _ = worker(config, len(data))
            rates[name].append(total / elapsed)
            cpu[name].append(used / total * 1e6)
            print(f"  pass {i + 1} {name:<9} {total / elapsed:>10,.0f} readings/s", flush=True)
    print(
        f"vigil security benchmark ({'smoke' if args.smoke else 'full'}): feature worker, {total:,} readings in "
        f"{len(data):,} messages of {args.batch}, {args.machines} machines, medians of {args.repeat}"
    )
    for name in rates:
        print(
            f"  {name:<9} {statistics.median(rates[name]):>10,.0f} readings/s, "
            f"CPU {statistics.median(cpu[name]):.2f} us/reading"
        )
    ratio = statistics.median(rates["SASL_SSL"]) / statistics.median(rates["plaintext"])
    print(f"  SASL_SSL / plaintext throughput: {ratio:.2f}")


if __name__ == "__main__":
    main()
