"""TransactionalProducer's bookkeeping with a stand-in for kafka-python's producer (the broker side is tested in
tests/integration/vigil/test_transactions.py): which id follows which assignment, when a transaction opens,
what a failed commit does."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaError, ProducerFencedError

import vigil.transactions as transactions
from vigil.config import KafkaSettings
from vigil.exceptions import ProducerFenced, TransactionAborted
from vigil.transactions import TransactionalProducer


class _Producer:
    def __init__(self, fail_commit: BaseException | None = None, **config: Any) -> None:
        self.config = config
        self.calls: list[str] = []
        self.fail_commit = fail_commit
        self.closed = False

    def init_transactions(self) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send(self, topic: str, **kwargs: Any) -> str:
        self.calls.append(f"send {topic}")
        return "future"

    def send_offsets_to_transaction(self, offsets: dict[Any, Any], group: Any) -> None:
        self.calls.append(f"offsets {sorted(offsets.items())} {group}")

    def commit_transaction(self) -> None:
        if self.fail_commit is not None:
            raise self.fail_commit
        self.calls.append("commit")

    def abort_transaction(self) -> None:
        self.calls.append("abort")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[_Producer]:
    producers: list[_Producer] = []

    def make_producer(kafka: KafkaSettings, **config: Any) -> _Producer:
        producers.append(_Producer(**config))
        return producers[-1]

    monkeypatch.setattr(transactions, "make_producer", make_producer)
    return producers


def test_the_id_follows_the_lowest_assigned_partition_and_the_producer_is_replaced_only_when_it_changes(
    made: list[_Producer],
) -> None:
    tx = TransactionalProducer(KafkaSettings(), "g", "features", transaction_timeout_ms=60_000)
    tx.assign({2, 3})
    tx.assign([3, 2])
    assert len(made) == 1 and made[0].config["transactional_id"] == "g-features-p2"
    assert made[0].calls == ["init"] and made[0].config["transaction_timeout_ms"] == 60_000
    tx.assign({0, 2})
    assert len(made) == 2 and made[0].closed and made[1].config["transactional_id"] == "g-features-p0"
    tx.assign(set())
    assert made[1].closed and tx.producer is None and tx.transactional_id is None
    with pytest.raises(TransactionAborted):
        tx.send("t", value=b"x")  # owning nothing, it has nothing to send with


def test_a_transaction_opens_on_the_first_send_and_commits_with_the_offsets(made: list[_Producer]) -> None:
    tx = TransactionalProducer(KafkaSettings(), "g", "models")
    tx.assign({0})
    assert tx.commit({}, "g") is False  # nothing sent, no offsets: nothing to commit
    tx.send("out", value=b"1")
    tx.send("out", value=b"2")
    assert tx.in_transaction
    assert tx.commit({"tp": 5}, "g") is True
    assert made[0].calls == ["init", "begin", "send out", "send out", "offsets [('tp', 5)] g", "commit"]
    assert not tx.in_transaction and tx.commits == 1


def test_a_failed_commit_aborts_and_raises_transaction_aborted(made: list[_Producer]) -> None:
    tx = TransactionalProducer(KafkaSettings(), "g", "models")
    tx.assign({0})
    made[0].fail_commit = KafkaError("broker gone")
    tx.send("out", value=b"1")
    with pytest.raises(TransactionAborted):
        tx.commit({}, "g")
    assert made[0].calls[-1] == "abort" and not tx.in_transaction and tx.aborts == 1


def test_a_fenced_producer_raises_producer_fenced_and_is_dropped(made: list[_Producer]) -> None:
    tx = TransactionalProducer(KafkaSettings(), "g", "models")
    tx.assign({0})
    made[0].fail_commit = ProducerFencedError("a newer producer has the id")
    tx.send("out", value=b"1")
    with pytest.raises(ProducerFenced):
        tx.commit({}, "g")
    assert tx.producer is None and made[0].closed and "abort" not in made[0].calls
    tx.restart()  # a new producer for the same id (a supervisor's decision: the service exits instead)
    assert len(made) == 2 and made[1].config["transactional_id"] == "g-models-p0"


class _Result:
    """kafka-python's TransactionalRequestResult of a commit the broker never answers."""

    def __init__(self, seen: list[float | None], tx: TransactionalProducer) -> None:
        self.seen, self.tx = seen, tx

    def wait(self, timeout_ms: int | None = None) -> bool:
        assert timeout_ms is not None, "the wait must be bounded"
        self.seen.append(self.tx.waiting_s())  # what /healthz shows meanwhile
        return False  # the latch never set within timeout_ms


class _Manager:
    def __init__(self, result: _Result) -> None:
        self.result = result
        self.last_error: BaseException | None = None

    def begin_commit(self) -> _Result:
        return self.result

    def is_bumping_epoch(self) -> bool:
        return False


class _Sender:
    def wakeup(self) -> None:
        pass


def test_a_commit_the_broker_never_answers_times_out_and_drops_the_producer(
    made: list[_Producer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transactions, "_bounded", lambda producer: True)  # the stand-in plays kafka-python's
    tx = TransactionalProducer(KafkaSettings(), "g", "features", commit_timeout_s=0.01)
    tx.assign({0})
    seen: list[float | None] = []
    manager = _Manager(_Result(seen, tx))
    made[0]._transaction_manager = manager  # type: ignore[attr-defined]
    made[0]._sender = _Sender()  # type: ignore[attr-defined]
    tx.send("out", value=b"1")
    with pytest.raises(TransactionAborted, match="not acknowledged within"):
        tx.commit({"tp": 1}, "g")
    assert len(seen) == 1 and seen[0] is not None, "waiting_s() reports the commit while it waits"
    assert tx.waiting_s() is None and tx.commit_timeouts == 1
    # The outcome is unknown: the producer is dropped, and the next one's init_transactions waits for it.
    assert tx.producer is None and made[0].closed and not tx.in_transaction
    tx.restart()
    assert len(made) == 2 and made[1].calls == ["init"]


def test_a_call_refused_because_the_producer_was_fenced_earlier_is_a_fence(made: list[_Producer]) -> None:
    """kafka-python 3 reports a fence seen by the sender thread as a plain KafkaError on the next call."""
    tx = TransactionalProducer(KafkaSettings(), "g", "features")
    tx.assign({0})
    manager = _Manager(_Result([], tx))
    manager.last_error = ProducerFencedError()
    made[0]._transaction_manager = manager  # type: ignore[attr-defined]
    error = KafkaError("Cannot execute transactional method because we are in an error state")
    fenced = tx.fenced_error(error)
    assert isinstance(fenced, ProducerFenced) and fenced.__cause__ is error
    assert tx.producer is None and made[0].closed
    assert tx.fenced_error(KafkaError("broker gone")) is None
