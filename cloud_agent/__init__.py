"""SDK for cloud compute agents: the subjects and headers they share with the cloud gateway."""

from bridge.contract import (
    HEADER_CLASS,
    HEADER_POLICY,
    HEADER_RB_MSG_ID,
    HEADER_REPLY_TOKEN,
    HEADER_RULE,
    HEADER_SITE,
    inbound_subject,
    reply_subject,
)

__all__ = [
    "HEADER_CLASS",
    "HEADER_POLICY",
    "HEADER_RB_MSG_ID",
    "HEADER_REPLY_TOKEN",
    "HEADER_RULE",
    "HEADER_SITE",
    "inbound_subject",
    "reply_subject",
]
