"""Online models: failure prediction from delayed labels, anomaly detection, drift, fail-safes."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from vigil.config._base import Section


class ModelConfig(Section):
    horizon_s: float = Field(default=48 * 3600.0, gt=0)
    """A feature vector is positive when a failure of its machine follows within this horizon."""
    min_lead_s: float = Field(default=4 * 3600.0, ge=0)
    """Alerts count as useful only this long (or longer) before the failure."""
    threshold: float = Field(default=0.5, gt=0, lt=1)
    """P(failure within horizon) at or above which a prediction alerts."""
    classifier: Literal["logistic", "arf"] = "logistic"
    anomaly_quantile: float = Field(default=0.995, gt=0.5, lt=1)
    warmup_s: float = Field(default=5400.0, ge=0)
    """After a machine starts, this long is warm-up: no anomaly alerts."""
    limit_persistence_s: float = Field(default=120.0, gt=0)
    """A hard limit is violated when a sensor stays beyond it this long (first to last sample of a run of samples
    while running, outside warm-up: 3 samples at 60 s); windows without that measure fall back to the mean."""
    cold_start_windows: int = Field(default=50, ge=0)
    """Windows a machine needs of its own before its per-machine normalisation is trusted."""
    negative_sample_rate: float = Field(default=0.25, gt=0, le=1)
    """Share of negatives kept while their label is pending (bounds pending-label memory)."""
    max_pending_per_machine: int = Field(default=5000, ge=10)
    min_confidence: float = Field(default=0.0, ge=0, le=0.5)
    """Below this distance of p from 0.5 the model is unsure and the rules decide."""
    drift_detector: Literal["adwin", "page_hinkley", "kswin"] = "adwin"
    checkpoint_interval_s: float = Field(default=30.0, gt=0)
    """How often the machines' state and the shared models go to the changelog (with the consumed offsets)."""
    commit_latency_s: float = Field(default=0.25, gt=0, le=60)
    """How long an output (prediction, drift event) may wait in the open transaction: then the transaction commits
    the outputs and the consumed offsets without the state (the state stays on ``checkpoint_interval_s``; a
    restart replays from the last state checkpoint and publishes nothing below the committed offsets)."""
    session_timeout_s: float = Field(default=45.0, ge=6, le=1800)
    """How long a crashed model worker keeps its partitions before the group hands them on (a restarted worker
    waits for this too: its dead predecessor is still a member until then)."""
    aggregations: list[str] = ["mean"]
    """Window aggregations of every sensor the models use (derived cross-sensor features are always used)."""
    deviation_z: float = Field(default=15.0, gt=0)
    """Floor of the anomaly threshold: smoothed deviation (in the machine's own standard deviations, per quarter of
    the load range). 15 since the spread is learnt per load quarter (was 50): tuned on pumps seed 1, motors seed 1,
    compressors seed 101 and the simulator's seed 11 (a cracking gear's kurtosis was quiet until 50 sigma)."""
    normal_forget: float = Field(default=0.002, gt=0, lt=1)
    """After its first ``cold_start_windows``, a machine's reference of normal forgets this share per healthy window."""
    margin_alert: float = Field(default=0.25, gt=0, le=1)
    """Degradation alert: a limited sensor has moved this share of the way from its normal to its hard limit."""
    trend_alert_h: float = Field(default=24.0, ge=0)
    """Trend alert: the current rate reaches a hard limit within this many hours (0 = off)."""
    trend_min_margin: float = Field(default=0.12, ge=0, le=1)
    """A trend alerts only once the sensor is this share of the way to its limit (noise stays quiet)."""
    trend_window_h: float = Field(default=4.0, gt=0)
    """The trend is the slope of a sensor's share of the way to its limit (measured against normal at the current
    operating point) over this many hours of steady running time (duty cycles and stops in between)."""
    trend_min_span_h: float = Field(default=2.0, ge=0)
    """Steady running hours the trend needs before it projects a time to the limit."""
    trend_settle_s: float = Field(default=3600.0, ge=0)
    """After a step of the running sensor (a speed change, a start inside a window), windows this long neither
    feed nor trigger the trend (the sensors' thermal lag: the warm-up is not wear)."""
    thermal_tau_s: float = Field(default=2700.0, ge=0)
    """Time constant of the load lag the normal regresses on (sensors that follow the load thermally, like a
    bearing warming after a speed step); 0 = the previous window's load."""
    cold_start_margin_factor: float = Field(default=1.0, ge=1)
    """In cold start (judged against the type's normal) the degradation level alerts only at this multiple of
    ``margin_alert``. 1 = off: 1.6 (with ``cold_start_trend_factor`` 2) cut the pump generator's false alarms
    62 -> 47 but missed a simulated motor failing 6 h into its cold start."""
    cold_start_trend_factor: float = Field(default=1.0, ge=1)
    """In cold start (judged against the type's normal) a trend alerts only at this multiple of
    ``trend_min_margin``."""
    classifier_min_margin: float = Field(default=0.8, ge=0, le=1)
    """The classifier alerts only when a limited sensor is at least this share of ``margin_alert`` on its way."""
    rereference_on_repair: bool = False
    """After a repair a machine learns its normal afresh (its type's normal meanwhile). Measured worse on the
    simulated fleet (the type normal is coarser than a slightly stale own normal), so off by default."""
    healthy_z: float = Field(default=2.0, gt=0)
    """A window whose anomaly score is below this (in standard deviations) updates the reference of normal."""
    smoothing: float = Field(default=0.3, gt=0, le=1)
    """Weight of the newest window in the smoothed per-machine deviation (EWMA); lower = steadier."""
    min_positive_labels: int = Field(default=20, ge=1)
    """Positive labels a type's classifier needs before its probability decides."""
    positive_weight: float = Field(default=1.0, gt=0)
    """Sample weight of a positive label (failures are rare)."""
    max_bad_quality_share: float = Field(default=0.2, ge=0, le=1)
    """Windows with more bad-quality readings than this never train a model."""
    out_of_range_z: float = Field(default=8.0, gt=0)
    """An input this many standard deviations outside what the model has seen: the rules decide."""
    retrain_min_labels: int = Field(default=200, ge=10)
    """Labels a background model needs before promote-if-better compares it with the live one."""
    anomaly_detector: Literal["deviation", "hst"] = "deviation"
    """``deviation``: largest smoothed per-machine z-scores; ``hst``: River half-space trees on them."""
    top_contributions: int = Field(default=5, ge=1, le=50)
    seed: int = 42

    @model_validator(mode="after")
    def _lead(self) -> Self:
        if self.min_lead_s >= self.horizon_s:
            raise ValueError(f"min_lead_s {self.min_lead_s:g} must be < horizon_s {self.horizon_s:g}")
        return self
