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
    warmup_s: float = Field(default=600.0, ge=0)
    """After a machine starts, this long is warm-up: no anomaly alerts."""
    cold_start_windows: int = Field(default=50, ge=0)
    """Windows a machine needs of its own before its per-machine normalisation is trusted."""
    negative_sample_rate: float = Field(default=0.25, gt=0, le=1)
    """Share of negatives kept while their label is pending (bounds pending-label memory)."""
    max_pending_per_machine: int = Field(default=5000, ge=10)
    min_confidence: float = Field(default=0.0, ge=0, le=0.5)
    """Below this distance of p from 0.5 the model is unsure and the rules decide."""
    drift_detector: Literal["adwin", "page_hinkley", "kswin"] = "adwin"
    checkpoint_interval_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _lead(self) -> Self:
        if self.min_lead_s >= self.horizon_s:
            raise ValueError(f"min_lead_s {self.min_lead_s:g} must be < horizon_s {self.horizon_s:g}")
        return self
