"""Why a message was allowed or denied: one definition of every reason the bridge records.

A reason is written as ``kind`` or ``kind:detail`` into audit records, the ``Rb-Reason``
notification header, logs and policy test cases, and read back by the metrics code. It is a
``str`` (so it serialises and compares as the text everyone already reads) whose kind and detail
are typed: code asks ``reason.kind is ReasonKind.LEAK_GUARD``, never ``startswith("leak-guard:")``.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonKind(StrEnum):
    """The kinds of reason; those that carry a detail say what it is."""

    RULE = "rule"  #: rule:<name> -- the first matching rule decided (allow or deny)
    NO_MATCHING_RULE = "no-matching-rule"  #: no rule matches; nothing leaves by default
    LEAK_GUARD = "leak-guard"  #: leak-guard:<class> -- the output still held a value of <class>
    PAYLOAD = "payload"  #: payload:<code> -- the payload is refused (PayloadError's code)
    BAD_HEADER = "bad-header"  #: headers the bridge will not read
    BAD_CLASSIFICATION = "bad-classification"  #: an Rb-Class that is not a classification
    BAD_SUBJECT = "bad-subject"  #: not a valid NATS subject
    ERROR = "error"  #: error:<exception type> -- an internal error, which denies (fail closed)
    CLOUD = "cloud"  #: cloud:<reject code> -- the gateway refused it for good


class Reason(str):
    """A reason as text (``kind`` or ``kind:detail``) with its typed parts."""

    __slots__ = ()

    @classmethod
    def of(cls, kind: ReasonKind, detail: str = "") -> Reason:
        return cls(f"{kind.value}:{detail}" if detail else kind.value)

    @property
    def kind(self) -> ReasonKind:
        """The kind; raises ValueError for text that is not a reason (read from outside)."""
        return ReasonKind(self.partition(":")[0])

    @property
    def detail(self) -> str:
        return self.partition(":")[2]
