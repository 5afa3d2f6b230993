"""What the two agent SDKs share behaves the same in both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bridge.agentkit import dead_letter_headers
from cloud_agent import CloudAgent
from edge_agent import Agent


@pytest.mark.parametrize("make", [Agent, CloudAgent])
def test_both_sdks_refuse_bad_names_and_a_second_handler(make: Any) -> None:
    for bad in ("", "a.b", "a*", "a>", "a b", "a\nb"):
        with pytest.raises(ValueError, match="must be one subject token"):
            make(bad)
    agent = make("intake")
    register: Callable[[str], Callable[[Any], Any]] = (
        agent.handle if isinstance(agent, Agent) else agent.capability
    )

    @register("docs.parse")
    async def first(request: Any) -> None:
        return None

    with pytest.raises(ValueError, match=r"'docs\.parse' already has a handler"):

        @register("docs.parse")
        async def second(request: Any) -> None:
            return None


def test_dead_letter_headers_keep_the_message_headers_but_nats_ones() -> None:
    headers = dead_letter_headers(
        {"Nats-Msg-Id": "m-1", "Rb-Class": "internal"},
        error="ValueError",
        subject="work.echo",
        attempts=3,
        **{"Agent-Instance": "i-1"},
    )
    assert headers == {
        "Rb-Class": "internal",
        "Agent-Error": "ValueError",
        "Agent-Subject": "work.echo",
        "Agent-Attempts": "3",
        "Agent-Instance": "i-1",
    }
