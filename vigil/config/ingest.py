"""Ingest settings: how collectors batch readings for Kafka and where they spool when Kafka is away."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from vigil.config._base import Section


class SpoolSettings(Section):
    """The bounded on-disk write-ahead spool of every collector: each batch is on disk before it goes to Kafka."""

    path: Path = Path(".vigil/spool/ingest.sqlite")
    """The spool file (SQLite); one per collector process. Survives a restart and is replayed first."""
    max_bytes: int = Field(default=1024**3, ge=1024)
    """Bound on the spooled message bytes; past it ``policy`` decides what is dropped (and counted)."""
    policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    """``drop_oldest`` keeps the freshest data; ``drop_newest`` refuses new messages and keeps the history."""
    retry_interval_s: float = Field(default=2.0, gt=0, le=600)
    """How often Kafka is probed while readings are spooled."""
    fsync: Literal["batch", "os"] = "batch"
    """When an appended batch is durable (it is appended before it goes to Kafka): ``batch`` fsyncs each one
    (survives a power cut); ``os`` leaves it to the operating system (survives kill -9, not a power cut)."""


class PublishSettings(Section):
    """Batching of readings into one :class:`vigil.contracts.ReadingBatch` per machine."""

    batch_max_samples: int = Field(default=500, ge=1, le=100_000)
    batch_format: Literal["rows", "columns", "packed"] = "rows"
    """``rows``: a ``reading_batch`` (one JSON object per reading); ``columns``: a ``reading_columns`` message
    (per sensor, lists of epoch-second timestamps and values), which the feature worker decodes and windows
    ~4x faster and Kafka stores ~half as large; ``packed``: the same columns as MessagePack with the numbers as
    float64 binaries (:func:`vigil.contracts.pack_columns`), decoded ~20x faster than ``columns``. Every consumer
    of the readings topic must understand the form (:func:`vigil.contracts.decode` reads all three)."""
    batch_max_ms: float = Field(default=200.0, ge=0, le=60_000)
    """A machine's partial batch is sent about this long (at most ~1.5x) after its first reading was added."""
    delivery_timeout_s: float = Field(default=30.0, gt=1, le=3600)
    """A send Kafka has not acknowledged within this time fails and its readings are spooled."""
    max_clock_skew_s: float = Field(default=float("inf"), ge=0)
    """Collectors flag a reading ``clock_skew`` (kept, counted) when its event time is more than this ahead of the
    collector's clock. Off (``inf``) by default: simulators and replays run ahead of real time; the feature
    worker refuses such readings itself (``windows.max_clock_skew_s``)."""
    gzip_level: int = Field(default=6, ge=1, le=9)
    """With ``kafka.compression = "gzip"``: kafka-python always uses level 9, which costs a collector ~3.4 us per
    reading; 6 costs ~0.5 us for ~30% larger messages (still ~5 bytes per reading), 1 ~0.2 us."""
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """How long one attempt to reach Kafka (at start and each probe while spooling) may take."""
