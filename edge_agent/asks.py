"""Asks that survive a NATS server, or an answering agent, lost in the middle of them.

Core NATS keeps nothing: a request or an answer passing through a server of the cluster at the
moment it dies is gone, and the asker would wait out its timeout. So :meth:`Agent.ask` sends each
ask with an id (``Rb-Ask-Id``). The answering agent remembers the ask and, when its handler is
still at it a tenth of a second later, sends a receipt (an empty message whose
``Rb-Ask-Received`` names a subject of that agent instance alone); a quicker answer carries
``Rb-Ask-Answered`` instead, so a quick ask costs no extra message. A repeat gets the receipt while
the handler runs and the same answer once it has run. The handler never runs twice for one ask
on one agent instance.

The asker sends the same ask again

- when its own connection moved to another server while it waited (the answer may be lost);
- when no word came within a second (then two, then four) from a subject whose agents send
  receipts, which their answers and receipts say (the ask may be lost on its way, or with the
  answering agent's server);
- every four seconds after a receipt, to the instance that sent it (its answer may be lost with
  its server). If that instance is gone or forgot the ask, the ask goes to the subject again,
  where another instance of the agent takes it.

A responder that is not built with this SDK sends no receipt and is never sent an ask again for
want of one; it may get an ask twice only when the asker's own connection moved.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bridge.recent import Recent, message_size

#: The asker's id of one ask, the same on every sending of it.
HEADER_ASK_ID: Final = "Rb-Ask-Id"
#: On the answering agent's receipt (an empty message to the ask's reply subject): the subject
#: on which that agent instance alone takes repeats of the ask.
HEADER_ASK_RECEIVED: Final = "Rb-Ask-Received"
#: On an answer to an ask: the agent that answered sends receipts (see RECEIPT_AFTER).
HEADER_ASK_ANSWERED: Final = "Rb-Ask-Answered"
#: On the answer to a repeat the instance does not know (it forgot the ask, or stopped before
#: answering): the asker sends the ask to its subject again.
HEADER_ASK_UNKNOWN: Final = "Rb-Ask-Unknown"

#: Longer ids are not this SDK's (32 hex digits): such a request is served as a plain one.
MAX_ASK_ID: Final = 64

#: An agent instance takes repeats of the asks it received on ``_INBOX.<agent>.<32 hex>``.
REPEATS_PREFIX: Final = "_INBOX."
_REPEATS = re.compile(r"_INBOX\.[^.*>\s]+\.[0-9a-f]{32}")

#: How long an answering agent waits before it sends a receipt: a quicker answer needs none.
RECEIPT_AFTER = 0.1
#: How long an asker waits for a receipt before sending the ask again; doubled each time.
RECEIPT_WAIT = 1.0
#: The longest wait for a receipt, and how often an ask with a receipt is checked on.
CHECK_EVERY = 4.0
#: The pauses before each time an agent whose connection came back asks the edge bridge for the
#: cloud's replies to its waiting ``ask_cloud``s (``rb.replies.again``): at once, 1 s and 3 s
#: after; more than once, because a bridge whose own connection moved at the same moment may
#: miss a request.
REPLIES_AGAIN_AFTER = (0.0, 1.0, 2.0)


@dataclass(slots=True)
class Remembered:
    """One ask an agent took: ``answer`` is None while its handler runs."""

    answer: tuple[bytes, dict[str, str] | None] | None = None
    at: float = 0.0
    size: int = 0


class AskMemory:
    """The asks an agent took, by reply subject and id.

    Asks being handled are kept until they are answered. Answers are kept ``keep`` seconds after
    they were sent, and at most ``max_answers`` of them holding at most ``max_bytes``; the
    oldest are forgotten first. A repeat that comes after its answer was forgotten runs the
    handler again (at-least-once, as without this memory).
    """

    def __init__(
        self,
        *,
        keep: float = 120.0,
        max_answers: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._running: dict[tuple[str, str], Remembered] = {}
        self._answered: Recent[tuple[str, str], Remembered] = Recent(
            keep, max_answers, max_bytes, clock
        )

    def take(self, key: tuple[str, str]) -> Remembered | None:
        """What is known of this ask; None when it is new (it is then remembered as running)."""
        self._answered.forget()
        known = self.known(key)
        if known is None:
            self._running[key] = Remembered()
        return known

    def known(self, key: tuple[str, str]) -> Remembered | None:
        """What is known of this ask, without remembering it."""
        return self._running.get(key) or self._answered.get(key)

    def answered(self, key: tuple[str, str], data: bytes, headers: dict[str, str] | None) -> None:
        """The ask was answered with ``data`` and ``headers``: a repeat gets the same."""
        if self._running.pop(key, None) is None:
            return
        size = message_size(headers, *key, data)
        self._answered.add(key, Remembered((data, headers), self._answered.clock(), size))

    def dropped(self, key: tuple[str, str]) -> None:
        """The ask was not answered (the agent stopped): a repeat may run it again."""
        self._running.pop(key, None)

    def __len__(self) -> int:
        return len(self._running) + len(self._answered)


def repeats_subject(subject: str) -> bool:
    """Whether a receipt names a subject an agent instance takes repeats on (and nothing else:
    no wildcard, no subject of the bridge)."""
    return _REPEATS.fullmatch(subject) is not None


def next_receipt_wait(wait: float) -> float:
    return min(wait * 2, CHECK_EVERY)
