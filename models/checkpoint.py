"""Checkpoints of the models stage: everything learnt, with the input offsets it reflects.

A checkpoint is one header record and the pickled :class:`~models.pipeline.FleetModel` (zlib-compressed, split
into chunks below the broker's message size), written to the stage's compacted changelog topic. The header says
which format, River version and feature schema wrote it, the offsets of the inputs it reflects, and the
SHA-256 of the body; :func:`loads` refuses anything that does not match with :class:`CheckpointError` or
:class:`IncompatibleCheckpoint`, and the service then rebuilds the models by replaying its inputs instead of
crashing or, worse, predicting with a model of another shape.

>>> from vigil.config import ModelConfig
>>> from models.pipeline import FleetModel
>>> header, chunks = dumps(FleetModel(ModelConfig()), {"features:0": 42}, schema="abc")
>>> model, offsets = loads(header, chunks, schema="abc")
>>> offsets
{'features:0': 42}
>>> loads(header, chunks, schema="other")
Traceback (most recent call last):
...
models.exceptions.IncompatibleCheckpoint: checkpoint feature schema abc, this build expects other
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from models.exceptions import CheckpointError, IncompatibleCheckpoint
from models.pipeline import FleetModel
from vigil.config import VigilConfig

FORMAT = 1
CHUNK_BYTES = 512 * 1024
"""Below the broker's default 1 MB message limit, with room for the record overhead."""


def river_version() -> str:
    from importlib.metadata import version

    return version("river")


def feature_schema(config: VigilConfig) -> str:
    """A fingerprint of what shapes the learnt state: sensors and derived features per machine type, the model
    inputs and kinds, the window size. A checkpoint from another schema is not used."""
    shape = {
        "types": {
            name: {"sensors": sorted(t.sensors), "derived": sorted(d.name for d in t.derived)}
            for name, t in sorted(config.machine_types.items())
        },
        "aggregations": sorted(config.models.aggregations),
        "classifier": config.models.classifier,
        "anomaly": config.models.anomaly_detector,
        "window_s": config.windows.size_s,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def dumps(model: FleetModel, offsets: dict[str, int], schema: str) -> tuple[bytes, list[bytes]]:
    """The header and the body chunks of a checkpoint."""
    body = zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 6)
    chunks = [body[i : i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)] or [b""]
    header = {
        "format": FORMAT,
        "river": river_version(),
        "schema": schema,
        "offsets": offsets,
        "chunks": len(chunks),
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "written_at": datetime.now(UTC).isoformat(),
        "machines": len(model.machine_ids()),
        "pending_labels": model.pending.count(),
    }
    return json.dumps(header).encode(), chunks


def read_header(header: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(header)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint header is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError("checkpoint header is not an object")
    return meta


def loads(header: bytes, chunks: Sequence[bytes | None], schema: str) -> tuple[FleetModel, dict[str, int]]:
    """Restore a checkpoint; raises :class:`CheckpointError` (unreadable) or :class:`IncompatibleCheckpoint`."""
    meta = read_header(header)
    if meta.get("format") != FORMAT:
        raise IncompatibleCheckpoint(f"checkpoint format {meta.get('format')!r}, this build reads {FORMAT}")
    theirs, ours = str(meta.get("river", "")), river_version()
    if theirs.split(".")[:2] != ours.split(".")[:2]:
        raise IncompatibleCheckpoint(f"checkpoint written with River {theirs}, this build has River {ours}")
    if meta.get("schema") != schema:
        raise IncompatibleCheckpoint(f"checkpoint feature schema {meta.get('schema')}, this build expects {schema}")
    if len(chunks) != meta.get("chunks") or any(c is None for c in chunks):
        raise CheckpointError(f"checkpoint has {len(chunks)} readable chunk(s) of {meta.get('chunks')}")
    body = b"".join(c for c in chunks if c is not None)
    if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
        raise CheckpointError("checkpoint body does not match its checksum (torn or corrupt write)")
    try:
        model = pickle.loads(zlib.decompress(body))
    except Exception as exc:  # unpickling can raise nearly anything; all of it means "unreadable"
        raise CheckpointError(f"checkpoint body cannot be unpickled: {exc!r}") from exc
    if not isinstance(model, FleetModel):
        raise CheckpointError(f"checkpoint holds a {type(model).__name__}, not a FleetModel")
    offsets = meta.get("offsets", {})
    if not isinstance(offsets, dict):
        raise CheckpointError("checkpoint offsets are not a mapping")
    return model, {str(k): int(v) for k, v in offsets.items()}
