"""``vigil collect <opcua|modbus|sparkplug|mqtt|replay|kafka|maintenance> ...``: one entry point for every collector."""

from __future__ import annotations

import importlib
import sys

COLLECTORS = {
    "opcua": ("ingest.opcua.runner", "subscribe to or poll OPC UA servers ([[sources.opcua]])"),
    "modbus": ("ingest.modbus", "poll Modbus TCP devices' register maps ([[sources.modbus]])"),
    "sparkplug": ("ingest.sparkplug", "Sparkplug B edge nodes over MQTT ([[sources.sparkplug]])"),
    "mqtt": ("ingest.mqtt", "receive pushed JSON over MQTT ([[sources.mqtt]])"),
    "replay": ("ingest.replay", "replay a CSV or Parquet history into Kafka"),
    "kafka": ("ingest.kafka_topic", "map another team's Kafka topic into the readings ([[sources.kafka]])"),
    "maintenance": (
        "ingest.maintenance",
        "import a CMMS export of failures, repairs, inspections ([[sources.maintenance]])",
    ),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COLLECTORS:
        rows = "\n".join(f"  {name:<12} {help_}" for name, (_, help_) in COLLECTORS.items())
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print(f"usage: vigil collect <collector> [options]\n\ncollectors:\n{rows}", file=out)
        return 0 if out is sys.stdout else 2
    module = importlib.import_module(COLLECTORS[argv[0]][0])
    return int(module.main(argv[1:]))
