"""Errors raised by the feature stage; callers catch these types, never strings."""

from __future__ import annotations

from vigil.exceptions import VigilError


class FeatureError(VigilError):
    """Root of every error the feature stage raises on purpose."""


class UnknownAggregationError(FeatureError):
    """A configured aggregation name is not registered."""
