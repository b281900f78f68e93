"""Checkpoints of the models stage: everything learnt, with the input offsets it reflects.

Two kinds of record, both refused with :class:`CheckpointError` / :class:`IncompatibleCheckpoint` when they do not
match this build (format, River version, feature schema, state shape, checksum), so the service rebuilds by
replay instead of crashing or, worse, predicting with a model of another shape:

* **the shared models of one worker** (per machine type: classifier, anomaly detector and threshold, the type's
  normal): one header record and the pickled :class:`~models.pipeline.FleetModel` *without its machines*
  (zlib-compressed, split into chunks below the broker's message size) -- :func:`dumps_shared`, :func:`loads`;
* **one machine's state** (its normal, smoothing, margins, sensor health, drift detectors, pending labels, alert
  episodes): one self-contained record -- a JSON header line, then the compressed pickle -- with the offsets of
  its partition that the state reflects (:func:`dump_machine`, :func:`load_machine`). The service keeps these in
  a changelog partitioned like the features topic, so a machine's state follows its partition between workers.

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

import dataclasses
import hashlib
import json
import pickle
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.exceptions import CheckpointError, IncompatibleCheckpoint
from models.labels import Pending
from models.metrics import Episode
from models.pipeline import FleetModel, MachineMemory, TypeMemory
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


def state_shape() -> str:
    """A fingerprint of the classes whose pickles a checkpoint holds (their field names): a checkpoint written
    before a field was added or renamed is refused and rebuilt, instead of failing later on a missing attribute."""
    classes = (MachineMemory, TypeMemory, Pending, Episode)
    shape = {c.__name__: [f.name for f in dataclasses.fields(c)] for c in classes}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]


@contextmanager
def machines_detached(model: FleetModel) -> Iterator[FleetModel]:
    """The model without its per-machine state for the duration of the block (moved out and back, not copied)."""
    held = {m: model.export_machine(m) for m in model.machine_ids()}
    for machine in held:
        model.drop_machine(machine)
    try:
        yield model
    finally:
        for machine, state in held.items():
            if state is not None:
                model.import_machine(machine, state)


def dumps_shared(model: FleetModel, schema: str) -> tuple[bytes, list[bytes]]:
    """A checkpoint of the per-type models only (what stays with one worker); machines go in their own records."""
    with machines_detached(model) as shared:
        return dumps(shared, {}, schema)


def dumps(model: FleetModel, offsets: dict[str, int], schema: str) -> tuple[bytes, list[bytes]]:
    """The header and the body chunks of a checkpoint."""
    body = zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 6)
    chunks = [body[i : i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)] or [b""]
    header = {
        "format": FORMAT,
        "river": river_version(),
        "schema": schema,
        "shape": state_shape(),
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


def _check_compatible(meta: dict[str, Any], schema: str) -> None:
    if meta.get("format") != FORMAT:
        raise IncompatibleCheckpoint(f"checkpoint format {meta.get('format')!r}, this build reads {FORMAT}")
    theirs, ours = str(meta.get("river", "")), river_version()
    if theirs.split(".")[:2] != ours.split(".")[:2]:
        raise IncompatibleCheckpoint(f"checkpoint written with River {theirs}, this build has River {ours}")
    if meta.get("schema") != schema:
        raise IncompatibleCheckpoint(f"checkpoint feature schema {meta.get('schema')}, this build expects {schema}")
    if meta.get("shape") != state_shape():
        raise IncompatibleCheckpoint(
            f"checkpoint state shape {meta.get('shape')}, this build's classes have shape {state_shape()}"
        )


def _offsets(meta: dict[str, Any]) -> dict[str, int]:
    offsets = meta.get("offsets", {})
    if not isinstance(offsets, dict):
        raise CheckpointError("checkpoint offsets are not a mapping")
    try:
        return {str(k): int(v) for k, v in offsets.items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint offsets are not integers: {exc}") from exc


def loads(header: bytes, chunks: Sequence[bytes | None], schema: str) -> tuple[FleetModel, dict[str, int]]:
    """Restore a checkpoint; raises :class:`CheckpointError` (unreadable) or :class:`IncompatibleCheckpoint`."""
    meta = read_header(header)
    _check_compatible(meta, schema)
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
    return model, _offsets(meta)


# ---------------------------------------------------------------------- one machine's record
@dataclass(frozen=True)
class MachineCheckpoint:
    machine_id: str
    state: dict[str, Any]
    """What :meth:`FleetModel.export_machine` returned; :meth:`FleetModel.import_machine` takes it back."""
    offsets: dict[str, int]
    """``"<topic>:<partition>"`` -> next offset: every record of this machine below it is in ``state``."""
    meta: dict[str, Any]
    """The header (format, River version, schema, shape, checksum, last window, counts, when written)."""
    last_window: datetime | None = None
    """End of the last window the state learnt (aware UTC)."""
    maintenance: tuple[tuple[str, str], ...] = ()
    """The latest maintenance events applied to the state, as ``(event, ts)``: a repeat of one is not applied."""


MACHINE_STATE_PARTS = ("memory", "pending", "failures", "audit")


def dump_machine(
    machine_id: str,
    state: dict[str, Any],
    offsets: dict[str, int],
    schema: str,
    last_window: datetime | None,
    maintenance: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One machine's record: a JSON header line, then the zlib-compressed pickle of its state."""
    body = zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 6)
    header = {
        "format": FORMAT,
        "river": river_version(),
        "schema": schema,
        "shape": state_shape(),
        "machine": machine_id,
        "offsets": offsets,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "last_window": last_window.isoformat() if last_window is not None else None,
        "maintenance": [list(m) for m in maintenance],
        "pending_labels": len(state.get("pending", ())),
        "written_at": datetime.now(UTC).isoformat(),
    }
    # json.dumps escapes newlines inside strings, so the first newline ends the header.
    return json.dumps(header).encode() + b"\n" + body


def load_machine(value: bytes, schema: str, machine_id: str | None = None) -> MachineCheckpoint:
    """Read one machine's record (kept under ``machine_id``'s key, when given); raises :class:`CheckpointError`
    or :class:`IncompatibleCheckpoint`. The checksum covers the body only, so the header's own fields are checked
    too: a record is never imported as another machine's, and nothing in it fails later, outside the refusal."""
    head, newline, body = value.partition(b"\n")
    if not newline:
        raise CheckpointError("machine checkpoint has no header line")
    meta = read_header(head)
    _check_compatible(meta, schema)
    if machine_id is not None and meta.get("machine") != machine_id:
        raise CheckpointError(f"record of {meta.get('machine')!r} kept under the key of {machine_id}")
    last_window = _last_window(meta.get("last_window"))
    maintenance = _maintenance(meta.get("maintenance", []))
    if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
        raise CheckpointError("machine checkpoint body does not match its checksum (torn or corrupt write)")
    try:
        state = pickle.loads(zlib.decompress(body))
    except Exception as exc:  # unpickling can raise nearly anything; all of it means "unreadable"
        raise CheckpointError(f"machine checkpoint body cannot be unpickled: {exc!r}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("memory"), MachineMemory):
        raise CheckpointError("machine checkpoint does not hold a machine's state")
    missing = [part for part in MACHINE_STATE_PARTS if part not in state]
    if missing:
        raise CheckpointError(f"machine checkpoint lacks {', '.join(missing)}")
    return MachineCheckpoint(str(meta.get("machine", "")), state, _offsets(meta), meta, last_window, maintenance)


def _maintenance(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not all(
        isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m) for m in value
    ):
        raise CheckpointError("machine checkpoint maintenance events are not a list of [event, ts]")
    return tuple((m[0], m[1]) for m in value)


def _last_window(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise CheckpointError(f"machine checkpoint last window {value!r} is not a timestamp") from exc
    if when.tzinfo is None:
        raise CheckpointError(f"machine checkpoint last window {value!r} has no time zone")
    return when
