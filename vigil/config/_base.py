"""Shared base for configuration sections: frozen, unknown keys refused (a typo is an error, not a no-op)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
