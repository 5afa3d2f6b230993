"""The outbox: window, batches, requeue, and one answer per envelope."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.link import Envelope, Reject
from bridge.link.outbox import DuplicateInFlight, Outbox


def outbox(window: int = 8) -> tuple[Outbox, list[tuple[Any, str, Reject | None]]]:
    answers: list[tuple[Any, str, Reject | None]] = []
    box = Outbox(
        window, 4, 0.0, lambda token, envelope, reject: answers.append((token, envelope.id, reject))
    )
    return box, answers


async def test_each_envelope_is_answered_once_and_late_answers_are_ignored() -> None:
    box, answers = outbox()
    await box.put_many([(Envelope(f"e{n}", "c", b""), n) for n in range(3)])
    assert [e.id for e in await box.next_batch()] == ["e0", "e1", "e2"]
    box.resolve(
        acked=["e0", "e1", "e0", "unknown"],
        rejected=[("e2", Reject("x", "y")), ("e2", Reject("x", "y"))],
    )
    assert answers == [(0, "e0", None), (1, "e1", None), (2, "e2", Reject("x", "y"))]
    assert len(box) == 0


async def test_a_redelivered_id_still_in_flight_is_skipped_not_doubled() -> None:
    """A redelivery racing its first copy is not queued twice; single put says so."""
    box, _ = outbox()
    assert await box.put_many([(Envelope("a", "c", b""), "first")]) == []
    assert await box.put_many(
        [(Envelope("a", "c", b""), "again"), (Envelope("b", "c", b""), "b")]
    ) == ["again"]
    assert len(box) == 2
    with pytest.raises(DuplicateInFlight):
        await box.put(Envelope("a", "c", b""), "third")


async def test_requeue_puts_every_unanswered_envelope_back_in_order() -> None:
    box, _ = outbox()
    await box.put_many([(Envelope(f"e{n}", "c", b""), n) for n in range(6)])
    await box.next_batch()
    box.resolve(acked=["e1"])
    assert box.requeue() == 5
    assert [e.id for e in await box.next_batch()] == ["e0", "e2", "e3", "e4"]
