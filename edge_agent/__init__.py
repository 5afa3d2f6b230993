"""SDK for on-prem agents: handlers for local subjects, asks to agents and to the cloud.

>>> from edge_agent import Agent, Request
>>> agent = Agent("claims-intake", nats_url="nats://127.0.0.1:4222")
>>> @agent.handle("claims.intake")
... async def intake(request: Request) -> object:
...     claim = request.json()
...     return await agent.ask_cloud("docs.parse", claim, classification="confidential")

See :class:`Agent` for the whole surface and :mod:`edge_agent.errors` for what can go wrong.
"""

from bridge.contract import (
    CLASSIFICATIONS,
    HEADER_AGENT_ERROR,
    HEADER_CLASS,
    HEADER_MSG_ID,
    HEADER_REASON,
    HEADER_REPLY_TO,
    HEADER_RULE,
    HEADER_STATUS,
    dead_letter_subject,
    outbound_subject,
)
from edge_agent.agent import Agent, AgentStats, DelegationFailed, Handler, Request
from edge_agent.errors import AgentError, Denied, HandlerFailed, TimedOut, Unavailable
from edge_agent.supervision import AgentStatus, agent_statuses

__all__ = [
    "CLASSIFICATIONS",
    "HEADER_AGENT_ERROR",
    "HEADER_CLASS",
    "HEADER_MSG_ID",
    "HEADER_REASON",
    "HEADER_REPLY_TO",
    "HEADER_RULE",
    "HEADER_STATUS",
    "Agent",
    "AgentError",
    "AgentStats",
    "AgentStatus",
    "DelegationFailed",
    "Denied",
    "Handler",
    "HandlerFailed",
    "Request",
    "TimedOut",
    "Unavailable",
    "agent_statuses",
    "dead_letter_subject",
    "outbound_subject",
]
