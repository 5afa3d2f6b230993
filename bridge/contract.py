"""The names shared by agents and the bridge: subjects, streams and headers.

This module is the whole contract between the agent SDKs and the bridge runtimes; it holds
constants and tiny pure helpers only, so both sides can import it without pulling anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bridge.errors import RbridgeError

#: Edge agents publish work for the cloud to ``rb.out.<capability>``.
OUTBOUND_PREFIX: Final = "rb.out."
#: The cloud gateway publishes accepted envelopes to ``rb.in.<capability>``.
INBOUND_PREFIX: Final = "rb.in."
#: Cloud agents publish replies for a site to ``rb.reply.<site>``.
REPLY_PREFIX: Final = "rb.reply."
#: An agent whose NATS connection came back publishes here a JSON list of the reply subjects it
#: still waits on; the edge bridge publishes again what it sent to them lately (a reply lost in
#: a server that died, or while the agent's connection moved).
REPLIES_AGAIN: Final = "rb.replies.again"
#: The most reply subjects one such request may name.
REPLIES_AGAIN_MAX: Final = 1000

STREAM_OUT: Final = "RB_OUT"
STREAM_IN: Final = "RB_IN"
STREAM_REPLY: Final = "RB_REPLY"
STREAM_QUARANTINE: Final = "RB_QUARANTINE"

#: Classification of a message: ``public`` < ``internal`` < ``confidential`` < ``restricted``.
HEADER_CLASS: Final = "Rb-Class"
#: Local subject on which the sender wants the reply.
HEADER_REPLY_TO: Final = "Rb-Reply-To"
HEADER_MSG_ID: Final = "Nats-Msg-Id"
HEADER_SITE: Final = "Rb-Site"
HEADER_RB_MSG_ID: Final = "Rb-Msg-Id"
HEADER_RULE: Final = "Rb-Rule"
HEADER_POLICY: Final = "Rb-Policy"
HEADER_REPLY_TOKEN: Final = "Rb-Reply"
HEADER_STATUS: Final = "Rb-Status"
HEADER_REASON: Final = "Rb-Reason"
#: On a deny notice: why, for people (e.g. both revisions of a revision refusal); never data.
HEADER_DETAIL: Final = "Rb-Detail"
#: On ``rb.reply.<site>`` without an ``Rb-Reply`` token: a cloud-initiated request, addressed to
#: this local subject (delivered only if an inbound rule of the site's policy allows it).
HEADER_TO: Final = "Rb-To"

#: Set by an agent SDK on a reply whose handler failed for good: the error's type and message
#: (never a payload value). An application header, so it crosses the bridge unchanged.
HEADER_AGENT_ERROR: Final = "Agent-Error"
#: Set by the cloud agent SDK on replies: the capability the reply answers.
HEADER_CAPABILITY: Final = "Rb-Capability"

#: Agents announce themselves on ``rb.agents.heartbeat.<agent>.<instance>``; a message that kept
#: failing goes to ``rb.agents.dead.<agent>`` with the error.
AGENTS_PREFIX: Final = "rb.agents."
#: JetStream key-value bucket holding each agent instance's last heartbeat (on the local NATS).
AGENTS_BUCKET: Final = "rb_agents"

#: Header prefixes the bridge owns; values arriving from the edge are never passed through.
RESERVED_HEADER_PREFIXES: Final = ("Nats-", "Rb-")

CLASSIFICATIONS: Final = ("public", "internal", "confidential", "restricted")


class HeaderConflict(RbridgeError, ValueError):
    """Two spellings of one ``Rb-*`` header with different values (``Rb-Class``, ``rb-class``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the header {name} is given twice, in different spellings and values")
        self.name = name


def rb_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``Rb-*`` headers by lower-case name: header names are case-insensitive.

    Raises :class:`HeaderConflict` when two spellings of one name carry different values, so
    that no reader can be made to see one value while another reader sees the other.
    """
    found: dict[str, str] = {}
    for name, value in headers.items():
        if name[:3].lower() != "rb-":
            continue
        key = name.lower()
        if key in found and found[key] != value:
            raise HeaderConflict(_canonical(key))
        found[key] = value
    return found


def _canonical(lower: str) -> str:
    return "-".join(part.capitalize() for part in lower.split("-"))


def outbound_subject(capability: str) -> str:
    """The local subject an edge agent publishes to for ``capability``."""
    return OUTBOUND_PREFIX + capability


def inbound_subject(capability: str) -> str:
    """The cloud subject on which cloud agents receive ``capability``."""
    return INBOUND_PREFIX + capability


def reply_subject(site: str) -> str:
    """The cloud subject on which replies for ``site`` are published."""
    return REPLY_PREFIX + site


def dead_letter_subject(agent: str) -> str:
    """Where an agent puts a message that kept failing, with the error."""
    return f"{AGENTS_PREFIX}dead.{agent}"


def error_summary(error: BaseException) -> str:
    """An error's type and message on one line, short enough for an ``Agent-Error`` header."""
    text = f"{type(error).__name__}: {error}".replace("\r", " ").replace("\n", " ")
    return text[:200]
