"""Event-time windows turning readings into per-machine feature vectors."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from vigil.config._base import Section


class WindowConfig(Section):
    kind: Literal["tumbling", "hopping"] = "tumbling"
    size_s: float = Field(default=60.0, gt=0)
    hop_s: float | None = Field(default=None, gt=0)
    """Hopping windows only: how far consecutive windows start apart (< size)."""
    grace_s: float = Field(default=10.0, ge=0)
    """Readings up to this much behind the watermark still count; later ones are routed as late."""
    idle_timeout_s: float = Field(default=120.0, gt=0)
    """Wall-clock time without readings after which a machine's open windows are closed (state ``stale``)."""
    max_clock_skew_s: float = Field(default=86_400.0, ge=0)
    """A reading whose event time is more than this ahead of the worker's wall clock is refused (counted and
    dead-lettered with reason ``clock_skew``) and never moves its machine's watermark: one reading from a clock set
    to next year must not make every later reading of the machine late. ``inf`` disables the check (simulations
    and replays running ahead of real time)."""
    accept_uncertain: bool = False
    """Whether ``uncertain``-quality readings feed value features (``bad`` ones never do)."""
    impute: Literal["none", "last"] = "none"
    """What a missing sensor's features become: ``none`` (explicitly missing) or its last window's values."""
    max_state_hold_s: float = Field(default=86_400.0, gt=0)
    """How long the running sensor's last reported value decides a machine's state while it reports nothing
    (report by exception: a stopped pump's speed is sent once, at 0). A window whose running sensor sent no usable
    reading is ``off``/``running`` from the held value while it is at most this old at the window's end, then
    ``stale`` (unknown) until the sensor reports again. A day covers a night's stop and a repair (the simulated
    plant's take up to 16 h); ``inf`` holds it for ever."""

    group_id: str = Field(default="vigil-features", min_length=1)
    """Kafka consumer group of the feature workers (every worker of one deployment uses the same)."""
    checkpoint_interval_s: float = Field(default=5.0, gt=0, le=3600)
    """How often a worker checkpoints window state to the changelog and commits offsets (also on rebalance)."""
    commit_latency_s: float = Field(default=5.0, gt=0, le=60)
    """How long an emitted feature vector may wait in the open transaction before a checkpoint commits it (window
    state is incremental, so a closing window costs one checkpoint more, not a full one per machine). 5 s, the
    checkpoint interval: at 0.25 s a worker dropped out of its consumer group during a rebalance in about a third
    of the two-worker rebalance test runs (0 of 8 at 5 s; cause not found), so the short budget is opt-in."""
    session_timeout_s: float = Field(default=45.0, ge=6, le=1800)
    """How long a crashed worker keeps its partitions before the group hands them to the others."""
    late_to_dead_letter: bool = True
    """Route late readings to the dead-letter topic (reason ``late``); they are counted either way."""
    write_influx: bool = False
    """Also write every feature vector to InfluxDB (measurement ``features``) before offsets are committed."""

    @model_validator(mode="after")
    def _hop(self) -> Self:
        if self.kind == "hopping":
            if self.hop_s is None:
                raise ValueError("hopping windows need hop_s")
            if self.hop_s >= self.size_s:
                raise ValueError(f"hop_s {self.hop_s:g} must be < size_s {self.size_s:g}")
        elif self.hop_s is not None:
            raise ValueError("hop_s applies to hopping windows only")
        return self
