"""SDK for on-prem agents: the subjects and headers they share with the edge bridge."""

from bridge.contract import (
    CLASSIFICATIONS,
    HEADER_CLASS,
    HEADER_MSG_ID,
    HEADER_REASON,
    HEADER_REPLY_TO,
    HEADER_STATUS,
    outbound_subject,
)

__all__ = [
    "CLASSIFICATIONS",
    "HEADER_CLASS",
    "HEADER_MSG_ID",
    "HEADER_REASON",
    "HEADER_REPLY_TO",
    "HEADER_STATUS",
    "outbound_subject",
]
