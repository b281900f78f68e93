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
