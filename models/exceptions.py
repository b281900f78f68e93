"""Errors the models stage raises on purpose."""

from __future__ import annotations

from vigil.exceptions import VigilError


class ModelsError(VigilError):
    """Root of the models stage's errors."""


class CheckpointError(ModelsError):
    """A model checkpoint could not be read (corrupt, truncated, not a checkpoint)."""


class IncompatibleCheckpoint(CheckpointError):
    """A checkpoint was readable but written for another format, River version or feature schema."""


class EvaluationError(ModelsError):
    """The offline evaluation could not run (for example the simulator or the window engine is missing)."""
