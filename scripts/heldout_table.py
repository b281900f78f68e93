"""The held-out table of the README from the reports ``scripts/report-heldout`` wrote: one line per generator and
method, failures pooled over its seeds.

    python3 scripts/heldout_table.py [.vigil/heldout]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

GROUPS = ("pumps", "motors", "compressors", "fans", "sim")
METHODS = ("vigil", "hard_limits", "margin")


def rows(root: str) -> list[str]:
    out = []
    for name in GROUPS:
        base = Path(root)
        files = sorted([*base.glob(f"{name}-*/report/backtest.json"), *base.glob(f"{name}-*/backtest.json")])
        if not files:
            continue
        results: list[dict[str, Any]] = [json.loads(f.read_text()) for f in files]
        months = sum(r["operating_machine_months"] for r in results)
        failures = [f for r in results for f in r["failures"]]
        n = len(failures)
        for method in METHODS:
            leads = [f["verdicts"][method]["lead_time_h"] for f in failures]
            ahead1 = [x for x in leads if x is not None and x >= 1]
            ahead4 = [x for x in leads if x is not None and x >= 4]
            fa = sum(r["scores"][method]["false_alarms"] for r in results)
            found = sum(r["scores"][method].get("informational_on_healthy_machines", 0) for r in results)
            healthy = sum(r["scores"][method].get("healthy_operating_machine_months", 0.0) for r in results)
            lead = f"{statistics.median(ahead1):.1f} h" if ahead1 else "-"
            out.append(
                f"{name:12s} {method:12s} seeds {len(files)}  failures {n:3d}  >=1 h {len(ahead1):3d} "
                f"({len(ahead1) / max(n, 1):4.0%})  >=4 h {len(ahead4):3d} ({len(ahead4) / max(n, 1):4.0%})  "
                f"median lead {lead:>7s}  false alarms {fa:3d} ({fa / max(months, 1e-9):5.2f}/op-month)  "
                f"digest on healthy {found:3d} ({found / healthy if healthy else float('nan'):5.2f}/healthy month)"
            )
    return out


if __name__ == "__main__":
    print("\n".join(rows(sys.argv[1] if len(sys.argv) > 1 else ".vigil/heldout")))
