"""The ``vigil`` command: one subcommand per service. Stages are imported only when their command runs."""

from __future__ import annotations

import importlib
import logging
import sys

# subcommand -> (module, help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "services": (
        "vigil.services",
        "start/stop the real Kafka, InfluxDB and Mosquitto used by tests and the demo",
    ),
    "config": ("vigil.config", "validate a plant configuration file and print a summary"),
    "smoke": ("vigil.smoke", "send one message of every contract through Kafka and a point through InfluxDB"),
    "alerts": ("alerts.service", "run the alerts stage: InfluxDB writer, alert lifecycle, notifications, ack API"),
    "alert": ("alerts.ctl", "acknowledge, assign, list and silence alerts (talks to the alerts service)"),
    "query": ("alerts.query", "open-alerts | machine ID | failures | false-alarms, answered from InfluxDB"),
    "demo": ("vigil.demo", "run the whole pipeline on the simulated fleet with a live view and a summary"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: vigil <command> [options]\n\ncommands:\n{rows}\n\n`vigil <command> --help` for details."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # kafka-python narrates every connection at INFO; keep its warnings and errors only.
    logging.getLogger("kafka").setLevel(logging.WARNING)
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
