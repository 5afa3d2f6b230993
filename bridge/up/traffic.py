"""Sample claims fed through the claims scenario, and what became of each.

Every ``deny_every``-th message is a health record sent to the cloud by mistake: it must be
denied at the bridge with the rule that keeps health data home. Every other message is a claim
handed to the claims intake agent, which must answer with the claimant re-identified.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edge_agent import Agent, AgentError, Denied
from edge_agent.examples.samples import claim, health_record

EXPECTED_DENY_RULE = "health-data-stays-home"


@dataclass
class Tally:
    """What happened so far; the live view and the summary read it."""

    sent: int = 0
    claims_sent: int = 0
    replies: int = 0
    named_correctly: int = 0
    denies_expected: int = 0
    denied_by_rule: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    sample_edge: dict[str, Any] | None = None
    sample_answer: dict[str, Any] | None = None

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Feeder:
    def __init__(
        self, desk: Agent, tally: Tally, *, deny_every: int = 10, seed: int = 2026
    ) -> None:
        self.desk = desk
        self.tally = tally
        self.deny_every = deny_every
        self.rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, count: int | None, rate: float) -> None:
        """Send ``count`` messages (None: until cancelled) at ``rate`` per second, then wait
        for every answer."""
        number = 0
        started = time.monotonic()
        try:
            while count is None or number < count:
                number += 1
                task = asyncio.create_task(self._one(number))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                delay = started + number / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self, number: int) -> None:
        tally = self.tally
        tally.sent += 1
        if self.deny_every and number % self.deny_every == 0:
            tally.denies_expected += 1
            try:
                await self.desk.ask_cloud(
                    "docs.medical.scan", health_record(number, self.rng), timeout=30
                )
            except Denied as denied:
                tally.denied_by_rule[denied.rule] += 1
            except AgentError as error:
                tally.errors[type(error).__name__] += 1
            else:
                tally.errors["health-record-not-denied"] += 1
            return
        document = claim(number, self.rng)
        tally.claims_sent += 1
        if tally.sample_edge is None:
            tally.sample_edge = document
        started = time.monotonic()
        try:
            answer = await self.desk.ask("claims.intake", document, timeout=60)
        except AgentError as error:
            tally.errors[type(error).__name__] += 1
            return
        tally.latencies.append(time.monotonic() - started)
        tally.replies += 1
        if answer.get("claimant", {}).get("name") == document["claimant"]["name"]:
            tally.named_correctly += 1
        else:
            tally.errors["claimant-not-reidentified"] += 1
        if tally.sample_answer is None and document is tally.sample_edge:
            tally.sample_answer = answer
