"""``POST /maintenance`` on the alerts API: maintenance records as JSON, through the same reader as the CMMS import.

The body is one JSON object or an array of them, keyed by the mapping's column names (``?source=NAME`` picks the
``[[sources.maintenance]]`` entry, by default the only one or the default mapping: ``machine``, ``ts``, ``kind``,
``failure_mode``, ``work_order``, ``text``). Records are numbered from 1 in the answer's refusals. The events go
to the maintenance topic keyed by machine (ids already there are counted ``duplicate``), refusals to the
dead-letter topic; the answer is the import summary, ``200`` when at least one record was usable (imported,
duplicate or ignored), ``400`` when none was, ``503`` when Kafka did not acknowledge (nothing is lost: send it
again, the ids make that safe).

This runs on the HTTP thread, not on the service loop: it touches no alert state, only Kafka (kafka-python's
producer is thread-safe). One import at a time, so that two requests with the same records cannot both find the
topic without them.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ingest.exceptions import SourceError
from ingest.maintenance import MaintenanceReader, pick_source, publish, published_event_ids

if TYPE_CHECKING:
    from alerts.service import AlertService

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000
"""Most records one request may carry (a bigger export belongs to ``vigil collect maintenance``)."""
ORIGIN = "http:/maintenance"
_one_at_a_time = threading.Lock()


def post_maintenance(service: AlertService, body: Any, source_name: str | None) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON answer for one ``POST /maintenance``."""
    records = [body] if isinstance(body, dict) else body
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        return 400, {"error": "body must be a JSON object or a non-empty array of objects (one per record)"}
    if len(records) > MAX_RECORDS:
        return 413, {"error": f"{len(records)} records; at most {MAX_RECORDS} per request"}
    config = service.config
    try:
        source = pick_source(config, source_name)
    except SourceError as exc:
        return 400, {"error": str(exc)}
    reader = MaintenanceReader(source.mapping, {m.id for m in config.machines}, source=source.name)
    result = reader.read(enumerate(records, start=1))
    with _one_at_a_time:
        try:
            published = published_event_ids(config.kafka, config.topics.maintenance)
            imported, already = publish(service.producer, config.topics, result, published, ORIGIN)
        except Exception as exc:  # Kafka did not acknowledge: the client retries, the event ids keep it idempotent
            log.warning("POST /maintenance: Kafka did not acknowledge (%s: %s)", type(exc).__name__, exc)
            return 503, {"error": f"Kafka did not acknowledge the import ({type(exc).__name__}); send it again"}
    summary = result.summary("POST /maintenance", imported=imported, already_published=already)
    usable = result.counters["rows"] - len(result.refusals)
    return (200 if usable else 400), summary
