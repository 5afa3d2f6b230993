"""The decision: from one message to allow (where, in what form) or deny (why).

``Engine.evaluate`` is synchronous and pure. Rules are tried in order and the first that matches
decides; no match is a deny. An allowed message is parsed, transformed, re-serialised and then
scanned whole by the leak guard: a detector class that the rule does not ``permit`` turns the
allow into a deny. Any exception on the way is a deny too; an error never lets a message out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from bridge.contract import CLASSIFICATIONS, HEADER_CLASS, HeaderConflict, rb_headers
from bridge.errors import UnknownKeyError
from bridge.policy.allowlist import FieldAllowlist
from bridge.policy.detectors import (
    BUILTIN_DETECTORS,
    Detector,
    DetectorSet,
    custom_detector,
    phones_in,
)
from bridge.policy.keyring import CryptoKey, KeyRing
from bridge.policy.leakguard import LeakGuard
from bridge.policy.model import InboundRule, ReplyRule, ResidencyPolicy, Rule, Verdict
from bridge.policy.paths import FieldPath
from bridge.policy.payload import PayloadError, PayloadLimits, parse_payload
from bridge.policy.reasons import Reason, ReasonKind
from bridge.policy.subjects import SubjectPattern, reserved_subject_error, subject_error
from bridge.policy.transforms import Applied, FieldTransform, reidentify_value, token_version

_SUBJECT_CACHE_LIMIT = 4096
_CLASS_KEY = HEADER_CLASS.lower()
_RANK = {name: rank for rank, name in enumerate(CLASSIFICATIONS)}
#: How a decision reports the fields a rule's ``keep`` allowlist dropped (never their names).
KEEP_PATH = "(not in keep)"


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the bridge sees it: the capability subject, headers and payload bytes."""

    subject: str
    payload: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Decision(NamedTuple):
    """The outcome for one message. A deny carries no payload.

    A named tuple rather than a dataclass: one is made per message, and this is the cheapest
    immutable record Python has.
    """

    verdict: Verdict
    reason: Reason
    rule: str | None
    policy: str
    revision: int
    classification: str | None = None
    destinations: tuple[str, ...] = ()
    transforms: tuple[Applied, ...] = ()
    payload: bytes | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    index: int
    allow: bool
    patterns: tuple[SubjectPattern, ...]
    classes: frozenset[str] | None
    destinations: tuple[str, ...]
    transforms: tuple[FieldTransform, ...]
    permit: frozenset[str]
    keep: FieldAllowlist | None
    reason: Reason  # rule:<name>, made once here rather than per message


@dataclass(frozen=True, slots=True)
class ReplyDecision:
    """What a reply rule did to a reply: the payload for the local agent, and what changed."""

    rule: str | None
    payload: bytes
    reidentified: int
    failed: int


@dataclass(frozen=True, slots=True)
class ReturnRule:
    """A reply or inbound rule, compiled: what it matches, what it restores, with which keys."""

    name: str
    patterns: tuple[SubjectPattern, ...]
    paths: tuple[FieldPath, ...]
    keys: tuple[str, ...]


def _first(rules: tuple[ReturnRule, ...], subject: str) -> ReturnRule | None:
    """The first of ``rules`` matching the concrete ``subject``, or None (also if invalid)."""
    if subject_error(subject, pattern=False) is not None:
        return None
    tokens = subject.split(".")
    for rule in rules:
        if any(pattern.matches(tokens) for pattern in rule.patterns):
            return rule
    return None


class Engine:
    """A policy compiled for evaluation, bound to the keys it needs."""

    def __init__(self, policy: ResidencyPolicy, keys: KeyRing, revision: int | None = None) -> None:
        """Compile ``policy``; raises :class:`UnknownKeyError` when ``keys`` lacks a named key."""
        spec = policy.spec
        self.policy = policy
        self.name = policy.metadata.name
        self.revision = policy.metadata.revision if revision is None else revision
        self.default_class = spec.defaults.classification
        self.limits = PayloadLimits.of(spec.limits)
        self._keys = keys
        custom = [
            custom_detector(name, d.pattern, d.description) for name, d in spec.detectors.items()
        ]
        builtin = list(BUILTIN_DETECTORS.values())
        if spec.phone_regions is not None:
            builtin = [
                phones_in(d, spec.phone_regions) if d.name == "phone" else d for d in builtin
            ]
        self.detectors: tuple[Detector, ...] = (*builtin, *custom)
        self.scanner = DetectorSet.of(self.detectors)
        self.guard = LeakGuard(self.scanner)
        self._current: dict[str, CryptoKey] = {}
        self.rules = tuple(self._compile(index, rule) for index, rule in enumerate(spec.rules))
        for rule in self.rules:  # compile every mask's detectors now, not on a first message
            for transform in rule.transforms:
                if transform.detectors:
                    self.scanner.together(transform.detectors)
        self.floors = tuple(
            (tuple(SubjectPattern.parse(s) for s in floor.subjects), _RANK[floor.minimum])
            for floor in spec.classification_floors
        )
        self._by_subject: dict[str, tuple[tuple[CompiledRule, ...], int]] = {}
        self._replies = tuple(self._compile_return(r, r.name or "reply") for r in spec.replies)
        self._inbound = tuple(self._compile_return(r, r.name) for r in spec.inbound)
        self._versions: dict[tuple[str, int], CryptoKey] = {}

    def _key(self, name: str) -> CryptoKey:
        if name not in self._current:
            self._current[name] = CryptoKey.derive(self._keys.current(name))
        return self._current[name]

    def _compile(self, index: int, rule: Rule) -> CompiledRule:
        transforms = tuple(
            FieldTransform(
                FieldPath.parse(t.path),
                t.action,
                key=self._key(t.key) if t.key else None,
                detectors=t.detectors,
                scanner=self.scanner,
            )
            for t in rule.transform
        )
        return CompiledRule(
            rule.name,
            index,
            rule.decision == "allow",
            tuple(SubjectPattern.parse(s) for s in rule.match.subjects),
            frozenset(rule.match.classification) if rule.match.classification else None,
            rule.destinations,
            transforms,
            frozenset(rule.permit),
            FieldAllowlist(FieldPath.parse(p) for p in rule.keep) if rule.keep else None,
            Reason.of(ReasonKind.RULE, rule.name),
        )

    # --- outbound ------------------------------------------------------------------------

    def candidates(self, subject: str) -> tuple[CompiledRule, ...] | None:
        """The rules whose subjects match ``subject``, in order; None if it is not a subject."""
        found = self._subject(subject)
        return None if found is None else found[0]

    def _subject(self, subject: str) -> tuple[tuple[CompiledRule, ...], int] | None:
        found = self._by_subject.get(subject)
        if found is None:
            if subject_error(subject, pattern=False) is not None:
                return None
            tokens = subject.split(".")
            rules = tuple(
                rule for rule in self.rules if any(p.matches(tokens) for p in rule.patterns)
            )
            floor = max(
                (
                    rank
                    for patterns, rank in self.floors
                    if any(p.matches(tokens) for p in patterns)
                ),
                default=-1,
            )
            found = (rules, floor)
            if len(self._by_subject) >= _SUBJECT_CACHE_LIMIT:
                self._by_subject.clear()
            self._by_subject[subject] = found
        return found

    def classify(self, headers: Mapping[str, str]) -> str | None:
        """The message's classification, the policy default when absent, None when invalid.

        Reads ``Rb-Class`` in any spelling; raises :class:`HeaderConflict` for two spellings
        with different values.
        """
        value = rb_headers(headers).get(_CLASS_KEY)
        if value is None:
            return self.default_class
        return value if value in CLASSIFICATIONS else None

    def evaluate(self, message: Message) -> Decision:
        """Decide for one message. Never raises: an error is a deny with reason ``error:<kind>``."""
        try:
            return self._evaluate(message)
        except Exception as error:  # fail closed, whatever went wrong
            return self._deny(
                Reason.of(ReasonKind.ERROR, type(error).__name__),
                None,
                None,
                "internal error while deciding",
            )

    def _deny(
        self, reason: Reason, rule: str | None, classification: str | None, detail: str = ""
    ) -> Decision:
        return Decision(
            "deny", reason, rule, self.name, self.revision, classification, detail=detail
        )

    def _evaluate(self, message: Message) -> Decision:
        try:
            classification = self.classify(message.headers)
        except HeaderConflict as conflict:
            return self._deny(Reason.of(ReasonKind.BAD_HEADER), None, None, str(conflict))
        if classification is None:
            return self._deny(
                Reason.of(ReasonKind.BAD_CLASSIFICATION),
                None,
                None,
                f"{HEADER_CLASS} must be one of {', '.join(CLASSIFICATIONS)}",
            )
        found = self._subject(message.subject)
        if found is None:
            return self._deny(
                Reason.of(ReasonKind.BAD_SUBJECT),
                None,
                classification,
                "the subject is not a valid NATS subject",
            )
        rules, floor = found
        if _RANK[classification] < floor:
            # The policy's floor for this subject: a sender's label can raise it, not lower it.
            classification = CLASSIFICATIONS[floor]
        for rule in rules:
            if rule.classes is None or classification in rule.classes:
                break
        else:
            return self._deny(
                Reason.of(ReasonKind.NO_MATCHING_RULE),
                None,
                classification,
                "no rule matches; nothing leaves by default",
            )
        if not rule.allow:
            return self._deny(rule.reason, rule.name, classification, "denied by rule")
        try:
            document = parse_payload(message.payload, self.limits)
        except PayloadError as error:
            reason = Reason.of(ReasonKind.PAYLOAD, error.code)
            return self._deny(reason, rule.name, classification, error.detail)
        kept = () if rule.keep is None else (Applied(KEEP_PATH, "drop", rule.keep.prune(document)),)
        applied = kept + tuple(
            Applied(t.path.text, t.action, t.apply(document)) for t in rule.transforms
        )
        output = orjson.dumps(document)
        leaked = self.guard.first_unpermitted(output, rule.permit)
        if leaked is not None:
            return Decision(
                "deny", Reason.of(ReasonKind.LEAK_GUARD, leaked), rule.name, self.name, self.revision, classification,
                transforms=applied, detail=f"the output still holds a value of class {leaked!r}",
            )  # fmt: skip
        return Decision(
            "allow", rule.reason, rule.name, self.name, self.revision, classification,
            rule.destinations, applied, output,
        )  # fmt: skip

    # --- replies -------------------------------------------------------------------------

    def evaluate_reply(self, subject: str, payload: bytes) -> ReplyDecision:
        """Re-identify the tokens a reply rule names; other fields are passed as they are.

        Raises :class:`~bridge.policy.payload.PayloadError` for a malformed reply payload.
        """
        rule = _first(self._replies, subject)
        if rule is None:
            parse_payload(payload, self.limits)
            return ReplyDecision(None, payload, 0, 0)
        return self._restore(rule, payload)

    def evaluate_inbound(self, subject: str, payload: bytes) -> ReplyDecision | None:
        """A cloud-initiated request to local ``subject``: None when no inbound rule allows it.

        Raises :class:`~bridge.policy.payload.PayloadError` for a malformed payload.
        """
        if reserved_subject_error(subject) is not None:
            return None
        rule = _first(self._inbound, subject)
        return None if rule is None else self._restore(rule, payload)

    def _compile_return(self, rule: ReplyRule | InboundRule, name: str) -> ReturnRule:
        return ReturnRule(
            name,
            tuple(SubjectPattern.parse(s) for s in rule.match.subjects),
            tuple(FieldPath.parse(p) for p in rule.reidentify),
            rule.keys if rule.keys is not None else self.policy.spec.keys,
        )

    def _restore(self, rule: ReturnRule, payload: bytes) -> ReplyDecision:
        document = parse_payload(payload, self.limits)
        if not rule.paths:
            return ReplyDecision(rule.name, payload, 0, 0)
        done = failed = 0
        for path in rule.paths:
            for container, slot in path.locate(document):
                value = container[slot]
                version = token_version(value) if type(value) is str else None
                if version is None:
                    continue
                restored = self._reidentify(value, version, rule.keys)
                if restored is _FAILED:
                    failed += 1
                else:
                    container[slot] = restored
                    done += 1
        return ReplyDecision(rule.name, orjson.dumps(document), done, failed)

    def _reidentify(self, token: str, version: int, allowed: tuple[str, ...]) -> Any:
        for name in allowed:
            key = self._versions.get((name, version))
            if key is None:
                try:
                    key = CryptoKey.derive(self._keys.get(name, version))
                except UnknownKeyError:
                    continue
                self._versions[(name, version)] = key
            try:
                return reidentify_value(token, key)
            except ValueError:
                continue
        return _FAILED


_FAILED = object()
