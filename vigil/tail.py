"""``vigil tail``: the messages of a topic as JSON lines, whatever their wire form.

For the data engineer checking what a new sensor topic carries, or what landed in the dead letters: every message
is decoded with the contracts (JSON, or the packed readings form, which is binary on the wire) and printed as one
JSON object per line with its topic, partition, offset and key; a message that is no contract is printed with
the reason and its bytes in base64, never skipped. It reads without a consumer group: nothing is committed and
no running service is disturbed.

    vigil tail vigil.readings --last 5            # the last 5 messages of every partition
    vigil tail vigil.dead-letter --from-beginning --max 100
    vigil tail vigil.features --follow            # new messages until Ctrl-C
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from vigil.config import KafkaSettings, load_config
from vigil.contracts import decode
from vigil.exceptions import ConfigError, ContractError
from vigil.transactions import make_read_committed_consumer

_log = logging.getLogger(__name__)


def render(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """One record as a JSON-able dict: ``message`` (the decoded contract) or ``error`` and ``raw_base64``.

    >>> bad = render("vigil.readings", 0, 7, b"PMP-001", b"nope")
    >>> bad["error"].split(":")[0], bad["raw_base64"]
    ('json', 'bm9wZQ==')
    """
    out: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key.decode(errors="replace") if key is not None else None,
    }
    if value is None:
        out["message"] = None  # a tombstone
        return out
    try:
        out["message"] = json.loads(decode(value).model_dump_json())
    except ContractError as exc:
        out["error"] = str(exc)
        out["raw_base64"] = base64.b64encode(value).decode()
    except (ValueError, OverflowError, RecursionError) as exc:
        # A validator that overflowed instead of refusing (the feature worker guards the same case): still one
        # line with the reason, never the end of the listing.
        out["error"] = f"schema: {type(exc).__name__}: {exc}"
        out["raw_base64"] = base64.b64encode(value).decode()
    return out


def records(
    kafka: KafkaSettings,
    topic: str,
    *,
    start: str,
    last: int,
    follow: bool,
    idle_s: float,
    stop: threading.Event | None = None,
    positioned: Callable[[], None] | None = None,
) -> Generator[dict[str, Any], None, None]:
    """The topic's records in offset order per partition (partitions interleaved as they are fetched), until
    ``stop`` is set (checked between polls) or, without ``follow``, the end is reached. ``positioned`` is called
    once the start offsets are taken: a message produced after that is printed."""
    from kafka import TopicPartition

    consumer = make_read_committed_consumer(kafka, None, enable_auto_commit=False)  # no aborted records
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConfigError([("topic", f"topic {topic!r} does not exist on {kafka.bootstrap_servers}")], "arguments")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        if start == "beginning":
            consumer.seek_to_beginning(*tps)
        else:
            begins = consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begins[tp], ends[tp] - last))
        if positioned is not None:
            positioned()
        quiet_since = time.monotonic()
        while stop is None or not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    yield render(tp.topic, tp.partition, m.offset, m.key, m.value)
            if batch:
                quiet_since = time.monotonic()
                continue
            caught_up = all(consumer.position(tp) >= ends[tp] for tp in tps)
            if not follow and (caught_up or time.monotonic() - quiet_since >= idle_s):
                return
    finally:
        consumer.close(autocommit=False)


def _following(topic: str) -> Callable[[], None]:
    def say() -> None:
        # On stderr, so that stdout stays JSON lines; a script (or a test) can wait for it before producing.
        print(f"vigil tail: following {topic} (Ctrl-C stops)", file=sys.stderr, flush=True)  # noqa: T201

    return say


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vigil tail", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("topic")
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example plant)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--from-beginning", action="store_true", help="every retained message")
    where.add_argument("--last", type=int, default=10, help="the last N messages of each partition (default 10)")
    parser.add_argument("--max", type=int, default=0, help="stop after this many messages (0: no limit)")
    parser.add_argument("--follow", action="store_true", help="keep printing new messages until interrupted")
    parser.add_argument("--idle-s", type=float, default=10.0, help="without --follow: stop after this long quiet")
    args = parser.parse_args(argv)
    from kafka.errors import KafkaError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
    # Ctrl-C (and SIGTERM) end the loop between two polls: a KeyboardInterrupt raised inside kafka-python could
    # leave it holding a lock that closing the consumer then waited for, and the process hung (seen once in CI).
    stop = threading.Event()

    def _stop(*_: object) -> None:
        # The loop then ends and the consumer is closed inside records(): kafka-python's network thread can race
        # that close and log a socket traceback (a reader torn down mid-recv, seen in CI). Nothing to act on for a
        # command that is ending, so kafka-python's errors are not printed from here on.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _stop)
    stream = records(
        config.kafka,
        args.topic,
        start="beginning" if args.from_beginning else "last",
        last=max(0, args.last),
        follow=args.follow,
        idle_s=args.idle_s,
        stop=stop,
        positioned=_following(args.topic) if args.follow else None,
    )
    try:
        for n, record in enumerate(stream, start=1):
            print(json.dumps(record), flush=True)  # noqa: T201
            if args.max and n >= args.max:
                break
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
    except KafkaError as exc:
        _log.error("vigil tail: Kafka: %s", exc)  # through the logging setup, which masks registered secrets
        return 1
    except KeyboardInterrupt:  # only if the handler above was not installed yet
        return 0
    except BrokenPipeError:
        # The reader went away (``vigil tail ... | head``): stop quietly. Standard output now points at /dev/null
        # so that the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        # Close the consumer now, whatever ended the loop: an exception's traceback kept the generator (and the
        # consumer's network thread) alive, and the process hung at exit. kafka-python's network thread can
        # race the close and log a socket traceback (a reader torn down mid-recv): nothing to act on for a
        # command that is ending, so its errors are not printed from here on.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        stream.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
