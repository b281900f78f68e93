"""``vigil backtest``: how would Vigil have done on our history? Scored against the hard limits and a margin rule.

    vigil backtest --config plant.toml                       # the files named in [[sources.file]] / [[sources.maintenance]]
    vigil backtest --config plant.toml --readings h.csv --maintenance wo.csv --out report/

Reads the readings with the plant file's ``[[sources.file]]`` mapping (``--source`` picks one; without any, the
long layout ``machine, sensor, ts, value``), the maintenance records with ``[[sources.maintenance]]``, runs them
through the window engine, the models and the alert lifecycle in this process, and writes ``backtest.json`` and
``backtest.html`` to ``--out``. Bad rows are refused with the row, the column and the reason (the first ones are
printed, all are counted); nothing good is dropped. Exit code 0 when the history was scored, 2 when the
configuration or a file cannot be used.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backtest.run import METHODS, Settings, result, run
from ingest.exceptions import IngestError
from ingest.tabular import Frame, Refusal, TableReader
from vigil.config import VigilConfig, load_config
from vigil.config.mapping import FileSource, MaintenanceSource
from vigil.contracts import MaintenanceEvent
from vigil.exceptions import ConfigError, VigilError

log = logging.getLogger(__name__)


def _pick(sources: list[Any], name: str | None, kind: str) -> Any | None:
    if name is not None:
        for source in sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in sources) or "none configured"
        raise ConfigError([(f"sources.{kind}", f"no source named {name!r} (configured: {known})")], "command line")
    return sources[0] if sources else None


def _files(given: list[str] | None, configured: str | None, what: str) -> list[Path]:
    patterns = given or ([configured] if configured else [])
    paths: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern))  # noqa: PTH207 - a user's pattern may be absolute or ([pattern] if not glob.has_magic(pattern) else [])
        paths += [Path(p) for p in matched]
    for p in paths:
        if not p.is_file():
            raise IngestError(f"{what} file {p} does not exist")
    return paths


def readings(config: VigilConfig, source: FileSource, paths: list[Path]) -> tuple[TableReader, Iterator[Frame]]:
    machines = {m.id: set(m.sensors) for m in config.machines_by_id.values()}
    reader = TableReader(source.mapping, machines, delimiter=source.delimiter, encoding=source.encoding)

    def frames() -> Iterator[Frame]:
        for path in paths:
            for frame, _ in reader.read(path):
                yield frame

    return reader, frames()


def maintenance(
    config: VigilConfig, source: MaintenanceSource, paths: list[Path]
) -> tuple[list[MaintenanceEvent], dict[str, Any]]:
    from ingest.maintenance import read_file  # the CMMS import's parser: one reading of a record, shared

    events: list[MaintenanceEvent] = []
    summary: Counter[str] = Counter()
    refusals: list[dict[str, Any]] = []
    for path in paths:
        got = read_file(path, source, set(config.machines_by_id))
        events += got.events
        summary.update(got.counters)
        refusals += [r.as_dict() for r in got.refusals][: 20 - len(refusals)]
    return events, {"files": [str(p) for p in paths], "imported": len(events), **summary, "refusals": refusals}


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def render(res: dict[str, Any]) -> str:
    s = res["settings"]
    lines = [
        f"{res['plant']}: {res['span']['days']:g} days from {res['span']['start']}, {res['machines']} machines, "
        f"{res['operating_machine_months']:.2f} operating machine-months, {res['readings']:,} readings, "
        f"{res['windows']:,} windows ({res['seconds']:.0f} s)",
        f"caught = alerted >= {s['min_lead_h']:g} h ahead in the same life (within {s['horizon_h']:g} h, or still "
        "open at the failure); false alarm = a paged episode no failure followed",
        f"{'':<13}{'failures':>9}{'caught':>8}{'late':>6}{'recall':>8}{'lead med h':>11}{'lead p10 h':>11}"
        f"{'paged':>7}{'false':>7}{'FA/op. machine-month':>22}{'info':>6}",
    ]
    for method in METHODS:
        o = res["scores"][method]
        lines.append(
            f"{method:<13}{o['failures']:>9}{o['caught']:>8}{o['late']:>6}{_fmt(o['recall']):>8}"
            f"{_fmt(o['lead_time_median_h'], '.1f'):>11}{_fmt(o['lead_time_p10_h'], '.1f'):>11}"
            f"{o['paged_episodes']:>7}{o['false_alarms']:>7}"
            f"{_fmt(o['false_alarms_per_operating_machine_month']):>22}{o['informational_episodes']:>6}"
        )
    life = res.get("lives") or {}
    if life.get("check"):
        lines.append(f"lives ({life.get('n', 0)} with a known start): {life['check']}")
    refused = res.get("input", {}).get("refused", {})
    if refused:
        lines.append(f"refused input rows/cells: {dict(sorted(refused.items()))} (first ones in the JSON)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``vigil backtest``: score Vigil and the rule baselines on a plant's history."""
    parser = argparse.ArgumentParser(prog="vigil backtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example)")
    parser.add_argument("--readings", nargs="+", help="readings files or globs (default: [[sources.file]] path)")
    parser.add_argument("--maintenance", nargs="+", help="maintenance exports (default: [[sources.maintenance]] path)")
    parser.add_argument("--source", help="which [[sources.file]] mapping reads the readings")
    parser.add_argument("--maintenance-source", help="which [[sources.maintenance]] mapping reads the records")
    parser.add_argument("--out", type=Path, default=Path("backtest-report"), help="folder for backtest.json/.html")
    parser.add_argument(
        "--from-influx",
        nargs=2,
        metavar=("START", "END"),
        help="read readings and maintenance of this time range (ISO 8601) from InfluxDB ([influx]) instead of files",
    )
    parser.add_argument("--margin-pct", type=float, default=5.0, help="margin rule: %% of each valid range")
    parser.add_argument("--burn-in-days", type=float, default=0.0, help="days whose false alarms are not counted")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        config = load_config(args.config)
        source = _pick(list(config.sources.file), args.source, "file") or FileSource(name="default")
        msource = _pick(list(config.sources.maintenance), args.maintenance_source, "maintenance") or MaintenanceSource(
            name="default"
        )
        if args.from_influx:
            reader, reading_paths, frames, events, msummary = _from_influx(config, *args.from_influx)
        else:
            reading_paths = _files(args.readings, source.path, "readings")
            if not reading_paths:
                raise ConfigError(
                    [("sources.file.path", "no readings: give --readings FILE or a path")], "command line"
                )
            maintenance_paths = _files(args.maintenance, msource.path, "maintenance")
            events, msummary = maintenance(config, msource, maintenance_paths) if maintenance_paths else ([], {})
            reader, frames = readings(config, source, reading_paths)
        bt = run(config, frames, events, Settings(margin_pct=args.margin_pct, burn_in_days=args.burn_in_days))
    except VigilError as exc:
        print(f"vigil backtest: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    refused = {k: v for k, v in reader.counters.items() if k not in ("rows", "readings", "unmapped_columns")}
    extra = {
        "command": "vigil backtest " + " ".join(argv),
        "input": {
            "files": [str(p) for p in reading_paths],
            "rows": reader.counters["rows"],
            "readings": reader.counters["readings"],
            "refused": refused,
            "refusals": [r.as_dict() for r in _first(reader.refusals)],
            "unmapped_columns": sorted(reader.unmapped_columns),
            "maintenance": msummary,
        },
    }
    res = finite(result(bt, extra))
    res["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backtest.json").write_text(json.dumps(finite(res), indent=1, default=str, allow_nan=False) + "\n")
    try:
        from backtest.report import write_report

        write_report(res, args.out / "backtest.html")
    except ImportError:  # pragma: no cover - the report ships with the package
        log.warning("the HTML report is not available; wrote the JSON only")
    print(json.dumps(res, default=str) if args.json else render(res))  # noqa: T201
    print(f"report: {args.out / 'backtest.html'}  data: {args.out / 'backtest.json'}", file=sys.stderr)  # noqa: T201
    return 0


def _from_influx(
    config: VigilConfig, start: str, end: str
) -> tuple[TableReader, list[Path], Iterator[Frame], list[MaintenanceEvent], dict[str, Any]]:
    """Readings and maintenance of ``[start, end)`` from InfluxDB (``[influx]``), as the file path provides them."""
    from datetime import UTC, datetime

    from backtest import influx_source

    def when(text: str, key: str) -> datetime:
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError([(key, f"{text!r} is not an ISO 8601 time")], "command line") from None
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)

    t0, t1 = when(start, "--from-influx START"), when(end, "--from-influx END")
    events = influx_source.maintenance(config.influx, t0, t1)
    counted = TableReader(FileSource(name="influx").mapping, {})

    def frames() -> Iterator[Frame]:
        for frame in influx_source.readings(config.influx, t0, t1):
            counted.counters["rows"] += len(frame)
            counted.counters["readings"] += len(frame)
            yield frame

    summary = {"source": f"influx {config.influx.url} {config.influx.database}", "imported": len(events)}
    return counted, [], frames(), events, summary


def finite(value: Any) -> Any:
    """NaN and infinity as ``None`` (JSON has neither), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _first(refusals: list[Refusal], n: int = 50) -> list[Refusal]:
    return refusals[:n]
