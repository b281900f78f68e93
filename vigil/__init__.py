"""Vigil's shared kernel: message contracts, plant configuration, settings and errors.

Nothing in this package imports a pipeline stage (``ingest``, ``streaming``, ``features``, ``models``,
``alerts``); the stages import it. The one exception is :mod:`vigil.cli`, the entry point that wires the
stages together.
"""

__version__ = "0.1.0"
