"""SDK for cloud compute agents: serve capabilities from ``RB_IN``, reply through the gateway.

>>> from cloud_agent import CloudAgent, CloudRequest
>>> agent = CloudAgent("parser", nats_url="nats://127.0.0.1:4222")
>>> @agent.capability("docs.parse")
... async def parse(request: CloudRequest) -> dict[str, object]:
...     return {"claimant": request.payload["claimant"], "length": len(request.data)}

The cloud never holds keys: tokenized values arrive as :class:`Token` (send them back unchanged
and the site re-identifies them) and keyed digests as :class:`Digest`.
"""

from bridge.contract import (
    HEADER_AGENT_ERROR,
    HEADER_CLASS,
    HEADER_POLICY,
    HEADER_RB_MSG_ID,
    HEADER_REPLY_TOKEN,
    HEADER_RULE,
    HEADER_SITE,
    HEADER_TO,
    dead_letter_subject,
    inbound_subject,
    reply_subject,
)
from cloud_agent.agent import (
    CapabilityHandler,
    CloudAgent,
    CloudAgentStats,
    CloudAgentUnavailable,
    CloudRequest,
)
from cloud_agent.payload import Digest, Token, tokens_in, with_pseudonyms

__all__ = [
    "HEADER_AGENT_ERROR",
    "HEADER_CLASS",
    "HEADER_POLICY",
    "HEADER_RB_MSG_ID",
    "HEADER_REPLY_TOKEN",
    "HEADER_RULE",
    "HEADER_SITE",
    "HEADER_TO",
    "CapabilityHandler",
    "CloudAgent",
    "CloudAgentStats",
    "CloudAgentUnavailable",
    "CloudRequest",
    "Digest",
    "Token",
    "dead_letter_subject",
    "inbound_subject",
    "reply_subject",
    "tokens_in",
    "with_pseudonyms",
]
