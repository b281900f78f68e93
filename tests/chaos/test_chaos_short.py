"""CI's short form of the chaos suite (``bench/chaos.py --short``): the whole chain on a private Kafka broker and
InfluxDB of its own (never the shared services), one ``kill -9`` of each component under load (collector, broker,
influxd, features, models, alerts), then every output compared by key with a clean run of the same input.

It fails on anything lost, duplicated or different, and prints the table (docs/chaos.md explains it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import COMPONENTS, print_report, render, short


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_one_kill_of_each_component_loses_doubles_and_changes_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    report = short(state_dir=tmp_path / "chaos", log=lines.append)
    print_report(report, log=lines.append)
    print("\n".join(lines))
    chaos_pass = report.passes[-1]
    # The suite did what it says: each component was killed once, under load.
    assert sorted(k.component for k in chaos_pass.kills if k.done) == sorted(COMPONENTS), "\n".join(lines)
    # The clean run produced something to compare (an empty comparison would pass vacuously).
    outputs = {r.output: r for r in report.rows}
    for name in ("readings (topic)", "feature vectors (topic)", "predictions (topic)", "alert transitions (topic)"):
        assert outputs[name].clean > 0, f"the clean run has no {name}"
    failing = [r for r in report.rows if not r.ok]
    details = [f"{r.output}: {e}" for r in failing for e in r.examples[:2]]
    assert not failing, "\n" + render(report.rows) + "\n" + "\n".join(details)
