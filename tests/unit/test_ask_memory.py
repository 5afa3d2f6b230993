"""What an answering agent remembers of the asks it took (edge_agent.asks.AskMemory)."""

from __future__ import annotations

import pytest

from edge_agent.asks import AskMemory, repeats_subject


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_ask_is_new_then_running_then_answered_with_the_same_bytes() -> None:
    memory = AskMemory(clock=Clock())
    key = ("_INBOX.a.1", "id-1")
    assert memory.take(key) is None  # new: the handler runs
    running = memory.take(key)
    assert running is not None
    assert running.answer is None
    memory.answered(key, b'{"ok":1}', {"Agent-Error": "x"})
    answered = memory.take(key)
    assert answered is not None
    assert answered.answer == (b'{"ok":1}', {"Agent-Error": "x"})
    assert memory.known(("_INBOX.a.1", "id-2")) is None  # another id is another ask
    assert memory.known(("_INBOX.b.1", "id-1")) is None  # and so is another reply subject
    assert len(memory) == 1


def test_answers_are_forgotten_after_keep_seconds_oldest_first() -> None:
    clock = Clock()
    memory = AskMemory(keep=10, clock=clock)
    for n in range(3):
        clock.now = n
        memory.take(("r", str(n)))
        memory.answered(("r", str(n)), b"x", None)
    clock.now = 11.5  # the first two are older than 10 s
    assert memory.known(("r", "2")) is not None
    memory.take(("r", "new"))
    assert [memory.known(("r", str(n))) is not None for n in range(3)] == [False, False, True]


def test_answers_are_bounded_in_number_and_bytes_but_running_asks_are_kept() -> None:
    memory = AskMemory(max_answers=2, max_bytes=1000, clock=Clock())
    memory.take(("r", "running"))
    for n in range(3):
        memory.take(("r", str(n)))
        memory.answered(("r", str(n)), b"x" * 10, None)
    assert memory.known(("r", "0")) is None
    assert memory.known(("r", "2")) is not None
    memory.take(("r", "big"))
    memory.answered(("r", "big"), b"x" * 2000, None)  # alone over the bound: not kept
    assert memory.known(("r", "big")) is None
    memory.take(("r" * 2000, "long reply subject"))  # the key counts too
    memory.answered(("r" * 2000, "long reply subject"), b"", None)
    assert memory.known(("r" * 2000, "long reply subject")) is None
    assert memory.known(("r", "running")) is not None  # never forgotten while it runs


def test_a_dropped_ask_may_run_again_and_a_late_answer_for_it_is_not_kept() -> None:
    memory = AskMemory(clock=Clock())
    memory.take(("r", "1"))
    memory.dropped(("r", "1"))
    assert memory.known(("r", "1")) is None
    memory.answered(("r", "1"), b"late", None)
    assert memory.known(("r", "1")) is None


@pytest.mark.parametrize(
    ("subject", "taken"),
    [
        ("_INBOX.claims-intake.0123456789abcdef0123456789abcdef", True),
        ("_INBOX.ägent+1.0123456789abcdef0123456789abcdef", True),
        ("rb.out.docs.parse", False),  # the cloud's outbound subjects: never
        ("_INBOX.>", False),
        ("_INBOX.*.0123456789abcdef0123456789abcdef", False),
        ("_INBOX.a.b.0123456789abcdef0123456789abcdef", False),
        ("_INBOX.a.0123456789abcdef0123456789abcdef.x", False),
        ("_INBOX.a.0123456789ABCDEF0123456789abcdef", False),
        ("", False),
    ],
)
def test_repeats_go_only_to_an_agent_instances_own_inbox(subject: str, taken: bool) -> None:
    assert repeats_subject(subject) is taken
