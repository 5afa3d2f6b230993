"""The kinds of audit record, one definition each: what every record of a kind carries.

The trail adds ``seq``, ``time``, ``prev`` and ``hash`` to each. Records hold decisions (rule,
reason, paths and actions, digests) and never a value. The kinds:

- :class:`DecisionRecord` -- the edge decided an outbound message (``allow`` or ``deny``);
- :class:`CloudRefusalRecord` -- the gateway refused an allowed message for good
  (``refused-by-cloud``, reason ``cloud:<reject code>``);
- :class:`InboundRecord` -- a reply or cloud-initiated request reached the edge
  (``delivered``, reason ``reply``/``request``; or ``refused``, reason the reject code).
"""

# No postponed annotations here: TypedDict must see NotRequired to know which keys are optional.
from typing import Literal, NotRequired, TypedDict, get_args, get_type_hints


class TransformRecord(TypedDict):
    path: str
    action: str
    places: int


class DecisionRecord(TypedDict):
    direction: Literal["outbound"]
    site: str
    msg_id: str
    subject: str
    decision: Literal["allow", "deny"]
    rule: str | None
    reason: str
    destination: str | None
    classification: str | None
    transforms: list[TransformRecord]
    input_sha256: str
    output_sha256: str | None
    policy: str
    revision: int
    reply: NotRequired[str]  #: why the message's Rb-Reply-To was not honoured, if it was not


class CloudRefusalRecord(TypedDict):
    direction: Literal["outbound"]
    site: str
    msg_id: str
    subject: str
    decision: Literal["refused-by-cloud"]
    rule: str
    reason: str
    policy: str
    revision: int


class InboundRecord(TypedDict):
    direction: Literal["inbound"]
    site: str
    msg_id: str
    subject: str
    decision: Literal["delivered", "refused"]
    rule: str | None
    reason: str
    reidentified: int
    input_sha256: str
    policy: str
    revision: int | None


AuditRecord = DecisionRecord | CloudRefusalRecord | InboundRecord
KINDS = (DecisionRecord, CloudRefusalRecord, InboundRecord)
_TRAIL_FIELDS = frozenset({"seq", "time", "prev", "hash"})
_NAMING = ("direction", "decision")  # the fields whose values name a record's kind
_VALUES = {kind: {key: get_args(get_type_hints(kind)[key]) for key in _NAMING} for kind in KINDS}


def kind_of(record: dict[str, object]) -> str | None:
    """The name of the kind a record read back from a trail is, or None if it is none of them.

    A record is of a kind when it has exactly the kind's fields (the trail's own aside) and its
    ``direction`` and ``decision`` are values the kind allows.
    """
    fields = record.keys() - _TRAIL_FIELDS
    for kind in KINDS:
        if not kind.__required_keys__ <= fields <= kind.__required_keys__ | kind.__optional_keys__:
            continue
        if all(record[key] in values for key, values in _VALUES[kind].items()):
            return kind.__name__
    return None
