"""The ``vigil`` command: one subcommand per service. Stages are imported only when their command runs."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from vigil.logs import secrets_from_environ, setup_logging

# subcommand -> (module, help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "services": (
        "vigil.services",
        "start/stop the real Kafka, InfluxDB and Mosquitto used by tests and the demo",
    ),
    "config": ("vigil.config", "validate a plant configuration file and print a summary"),
    "tail": ("vigil.tail", "print a topic's messages as JSON lines (any wire form; undecodable ones with the reason)"),
    "smoke": ("vigil.smoke", "send one message of every contract through Kafka and a point through InfluxDB"),
    "models": ("models.service", "online failure prediction, anomaly and drift detection from features and labels"),
    "evaluate": ("backtest.simulated", "the backtest on the simulated fleet: recall, lead time, false alarms vs rules"),
    "backtest": (
        "backtest.cli",
        "score Vigil and the rule baselines on a plant's own history (files in, JSON + HTML report out)",
    ),
    "detection-delay": (
        "models.detection",
        "how fast the models notice known changes (step, ramp, stuck sensor, load)",
    ),
    "alerts": ("alerts.service", "run the alerts stage: InfluxDB writer, alert lifecycle, notifications, ack API"),
    "alert": ("alerts.ctl", "acknowledge, assign, list and silence alerts (talks to the alerts service)"),
    "query": ("alerts.query", "open-alerts | machine ID | failures | false-alarms, answered from InfluxDB"),
    "simulate": ("ingest.simulator.cli", "serve the degrading fleet simulator over OPC UA (failures to Kafka)"),
    "collect": (
        "ingest.cli",
        "run a collector: opcua | modbus | sparkplug | mqtt | replay | kafka | maintenance, publishing to Kafka",
    ),
    "opcua": ("ingest.opcua.cert", "OPC UA tools: cert (a client certificate and key with the application URI)"),
    "demo": ("vigil.demo", "run the whole pipeline on the simulated fleet with a live view and a summary"),
    "features": ("features.service", "feature worker: event-time windows per machine -> feature vectors"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: vigil [--log-json] [--log-level LEVEL] <command> [options]\n\ncommands:\n{rows}\n\n`vigil <command> --help` for details."


def _logging_options(args: list[str]) -> tuple[list[str], bool, str]:
    """Global ``--log-json`` / ``--log-level LEVEL`` before the command; env ``VIGIL_LOG_JSON``/``VIGIL_LOG_LEVEL``."""
    as_json = os.environ.get("VIGIL_LOG_JSON", "").lower() in ("1", "true", "yes")
    level = os.environ.get("VIGIL_LOG_LEVEL", "INFO")
    while args and args[0].startswith("--log-"):
        if args[0] == "--log-json":
            as_json, args = True, args[1:]
        elif args[0] == "--log-level" and len(args) > 1:
            level, args = args[1], args[2:]
        elif args[0].startswith("--log-level="):
            level, args = args[0].split("=", 1)[1], args[1:]
        else:
            break
    return args, as_json, level


def main(argv: list[str] | None = None) -> int:
    args, as_json, level = _logging_options(sys.argv[1:] if argv is None else argv)
    level = level if level.upper() in logging.getLevelNamesMapping() else "INFO"
    setup_logging(level, json=as_json, secrets=secrets_from_environ(os.environ))
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"vigil: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
