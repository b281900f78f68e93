"""Reading topics back in integration tests: what a test waits for, then asserts on.

Vigil's own integration tests use these against the real broker, and so can a plant's tests of its configuration::

    messages = consume(kafka, [topics.readings], until=lambda got: len(got) >= 120)
    everything = read_all(kafka, [topics.predictions])   # once the writers have stopped: to the end, no waiting

Every record is read from the beginning of the topics by a consumer without a group (nothing is committed; each
partition is assigned by hand as soon as its topic exists, so a topic the service under test creates later is read
too), and ``map`` is applied once per record as it arrives: by default the record's message
(:func:`vigil.contracts.decode`); ``map=raw`` keeps kafka-python's records (topic, key, headers). A timeout
returns what arrived instead of raising, so that the test's own assertion says what is missing.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vigil.bus import make_consumer
from vigil.config import KafkaSettings
from vigil.contracts import decode


def raw(record: Any) -> Any:
    """kafka-python's record itself (``topic``, ``key``, ``value``, ``headers``), for ``map``."""
    return record


def message(record: Any) -> Any:
    """The record's message (the default ``map``)."""
    return decode(record.value)


class TopicReader:
    """Reads topics from their beginning in a background thread into :attr:`records` until :meth:`close`.

    For tests that run a service while reading its output; :func:`consume` is the one-shot form.
    """

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str], map: Callable[[Any], Any] = message) -> None:
        self.records: list[Any] = []
        """``map`` of every record read so far, in the order read (per partition: the topic's order)."""
        self._map = map
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._topics = list(topics)
        self._consumer = make_consumer(kafka, None)
        self._thread = threading.Thread(target=self._run, name=f"read-{','.join(topics)}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kafka import TopicPartition

        try:
            # Every partition assigned by hand once its topic exists (a service under test often creates its
            # output topic after the reader started; a group-less subscription to a topic that does not exist
            # yet was seen to miss it for minutes).
            waiting, assigned = list(self._topics), []
            while not self._stop.is_set():
                for topic in list(waiting):
                    partitions = self._consumer.partitions_for_topic(topic)
                    if partitions:
                        waiting.remove(topic)
                        assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
                        self._consumer.assign(assigned)
                if not assigned:
                    self._stop.wait(0.3)
                    continue
                for records in self._consumer.poll(timeout_ms=300).values():
                    self.records.extend(self._map(r) for r in records)
                if waiting:
                    self._stop.wait(0.2)
        except BaseException as exc:  # an assertion in ``map``: raised again by wait() and close()
            self._error = exc
        finally:  # closed by the thread that uses it (kafka-python's consumer is not thread-safe)
            self._consumer.close(autocommit=False)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def wait(self, until: Callable[[list[Any]], bool], timeout_s: float = 90.0, settle_s: float = 0.0) -> list[Any]:
        """A copy of :attr:`records` once ``until`` holds for them (or after ``timeout_s``), read ``settle_s``
        longer to catch what comes after the expected records (duplicates)."""
        deadline = time.monotonic() + timeout_s
        while not until(list(self.records)) and time.monotonic() < deadline:
            self._raise()
            time.sleep(0.1)
        time.sleep(settle_s)
        self._raise()
        return list(self.records)

    def close(self) -> None:
        """Stop reading; an error raised by ``map`` is raised here if :meth:`wait` did not raise it."""
        self._stop.set()
        self._thread.join(60)
        self._raise()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the test's own error is the one to see
            with contextlib.suppress(BaseException):
                self.close()


def consume(
    kafka: KafkaSettings,
    topics: Sequence[str],
    until: Callable[[list[Any]], bool],
    map: Callable[[Any], Any] = message,
    timeout_s: float = 90.0,
    settle_s: float = 0.0,
) -> list[Any]:
    """``map`` of the records of ``topics`` from their beginning, once ``until`` holds for them (or after
    ``timeout_s``), read ``settle_s`` longer (see :meth:`TopicReader.wait`)."""
    with TopicReader(kafka, topics, map) as reader:
        return reader.wait(until, timeout_s, settle_s)


def read_all(
    kafka: KafkaSettings, topics: Sequence[str], map: Callable[[Any], Any] = message, timeout_s: float = 60.0
) -> list[Any]:
    """``map`` of every record of ``topics``, from their beginning to their end as of the call, per partition in
    order. For a test whose writers have stopped: the topics are complete, so reading them to their end sees every
    record, a duplicate included, without waiting for a count or for a quiet period. read_committed: the end is
    the last stable offset, so records of a transaction still open are not waited for (nor read)."""
    from kafka import TopicPartition

    consumer = make_consumer(kafka, None)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"{list(topics)} not read to their end within {timeout_s:g}s")
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(map(r) for r in records)
        return out
    finally:
        consumer.close(autocommit=False)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Return once ``condition()`` holds; raise ``AssertionError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.2)


class _Forward(socketserver.BaseRequestHandler):
    target: tuple[str, int]

    def handle(self) -> None:
        with socket.create_connection(self.target, timeout=10) as upstream:

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
            back.start()
            pump(self.request, upstream)
            back.join(10)


@contextlib.contextmanager
def forwarded(target: tuple[str, int], host: str = "127.0.0.2") -> Iterator[tuple[str, int]]:
    """A TCP forwarder on ``host`` (an address the servers' certificates do not name) to ``target``."""
    handler = type("Forward", (_Forward,), {"target": target})
    server = socketserver.ThreadingTCPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
