"""The residency policy language as pydantic models: frozen, strict about unknown keys.

These models are the single source of the JSON Schema (``rbridge policy schema``). They check
what one value can tell about itself (a subject's syntax, a path's syntax, a transform's
options); what needs the whole policy (declared destinations, keys and detectors, duplicate
names, shadowed rules) is checked by :mod:`bridge.policy.loader`, so that every problem is
reported in one run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.policy.paths import FieldPath
from bridge.policy.phones import phone_plan_regions
from bridge.policy.subjects import reserved_subject_error, subject_error

API_VERSION = "rbridge/v1"
KIND = "ResidencyPolicy"
SCHEMA_ID = "https://rbridge.dev/schema/residency-policy.schema.json"
#: orjson serialises at most 254 levels of nesting; a deeper limit could not be honoured.
MAX_PAYLOAD_DEPTH = 254

Classification = Literal["public", "internal", "confidential", "restricted"]
Action = Literal["drop", "mask", "hash", "tokenize"]
Verdict = Literal["allow", "deny"]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
RuleName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class Metadata(_Model):
    name: Name = Field(description="Short name of the policy, e.g. 'claims'.")
    revision: int = Field(
        0, ge=0, description="Revision of this policy; signed bundles carry their own."
    )
    description: str = ""


class Destination(_Model):
    jurisdiction: str = Field(
        pattern=r"^[A-Z]{2,8}$",
        description="Jurisdiction the destination lies in, e.g. EU, US, CH.",
    )
    description: str = ""


class CustomDetector(_Model):
    pattern: str = Field(
        min_length=1,
        description="RE2 pattern (linear time: no backreferences, no lookaround).",
    )
    description: str = ""


class Defaults(_Model):
    classification: Classification = Field(
        "confidential", description="Classification of a message that carries no Rb-Class header."
    )


class Limits(_Model):
    max_payload_bytes: int = Field(
        1 << 20, ge=1, le=64 << 20, description="Larger payloads are denied."
    )
    max_depth: int = Field(
        64,
        ge=1,
        le=MAX_PAYLOAD_DEPTH,
        description=f"Deeper-nested payloads are denied (at most {MAX_PAYLOAD_DEPTH}, the deepest "
        "the bridge can serialise again).",
    )


def _check_subject(subject: str) -> str:
    problem = subject_error(subject, pattern=True)
    if problem is not None:
        raise ValueError(f"bad subject pattern {subject!r}: {problem}")
    return subject


def _check_local_subject(subject: str) -> str:
    _check_subject(subject)
    problem = reserved_subject_error(subject)
    if problem is not None:
        raise ValueError(f"subject pattern {subject!r}: {problem}")
    return subject


# Checked one by one, so that a list with several bad subjects reports each of them.
SubjectPatternText = Annotated[str, AfterValidator(_check_subject)]
LocalSubjectPatternText = Annotated[str, AfterValidator(_check_local_subject)]


def _check_path(path: str) -> str:
    try:
        FieldPath.parse(path)
    except ValueError as error:
        raise ValueError(f"bad path {path!r}: {error}") from None
    return path


class Match(_Model):
    subjects: tuple[SubjectPatternText, ...] = Field(
        min_length=1,
        description="Capabilities (subjects after 'rb.out.'), NATS wildcards: '*' one token, '>' the rest.",
    )
    classification: tuple[Classification, ...] | None = Field(
        None, min_length=1, description="Classifications this rule applies to; omitted means any."
    )


class ClassificationFloor(_Model):
    """The lowest classification messages on these subjects may claim (``Rb-Class`` can only
    raise it): a sender who labels a claim ``public`` does not make it public."""

    subjects: tuple[SubjectPatternText, ...] = Field(
        min_length=1, description="Capabilities this floor applies to (NATS wildcards)."
    )
    minimum: Classification = Field(description="The classification at least assumed.")


class Transform(_Model):
    path: str = Field(description="Field path: $.a.b, $.a[*].b, $.a[0], $.a.*, $..name")
    action: Action
    key: Name | None = Field(None, description="Named on-prem key, for hash and tokenize.")
    detectors: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="For mask: mask only what these detectors find; omitted masks the whole field.",
    )

    _path_valid = field_validator("path")(_check_path)

    @model_validator(mode="after")
    def _options_fit_action(self) -> Transform:
        if self.action in ("hash", "tokenize") and self.key is None:
            raise ValueError(f"action {self.action!r} needs a 'key' (a name from spec.keys)")
        if self.action in ("drop", "mask") and self.key is not None:
            raise ValueError(f"action {self.action!r} takes no 'key'")
        if self.action != "mask" and self.detectors is not None:
            raise ValueError(f"'detectors' only applies to action 'mask', not {self.action!r}")
        return self


class Rule(_Model):
    name: RuleName
    description: str = ""
    match: Match
    decision: Verdict
    destinations: tuple[str, ...] = Field(
        (), description="Where an allowed message may go, in order of preference."
    )
    keep: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="Field allowlist: only these paths leave; every other field is dropped "
        "(before the transforms run) and the count reported. Paths: $.a.b, $.a[*].b, $.a[0], $.a.*",
    )
    transform: tuple[Transform, ...] = ()
    permit: tuple[str, ...] = Field(
        (), description="Detector classes allowed to remain in the output (leak guard)."
    )

    @field_validator("keep")
    @classmethod
    def _keep_paths(cls, paths: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for path in paths or ():
            _check_path(path)
            if ".." in path:
                raise ValueError(
                    f"bad path {path!r}: a 'keep' path names fields exactly; '..' is not allowed"
                )
        return paths

    @model_validator(mode="after")
    def _shape_fits_decision(self) -> Rule:
        if self.decision == "allow" and not self.destinations:
            raise ValueError("an 'allow' rule needs at least one destination")
        if self.decision == "deny" and (
            self.destinations or self.transform or self.permit or self.keep
        ):
            raise ValueError("a 'deny' rule takes no destinations, keep, transform or permit")
        return self


class ReplyMatch(_Model):
    subjects: tuple[SubjectPatternText, ...] = Field(
        min_length=1, description="Capabilities whose replies this rule covers."
    )


class _Reidentifying(_Model):
    reidentify: tuple[str, ...] = Field(
        (), description="Paths whose tokens are turned back into the original values on-prem."
    )
    keys: tuple[Name, ...] | None = Field(
        None,
        description="Keys whose tokens may be re-identified; omitted means every key in spec.keys.",
    )

    @field_validator("reidentify")
    @classmethod
    def _paths_valid(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            _check_path(path)
        return paths


class ReplyRule(_Reidentifying):
    name: RuleName | None = None
    match: ReplyMatch


class InboundMatch(_Model):
    subjects: tuple[LocalSubjectPatternText, ...] = Field(
        min_length=1,
        description="Local subjects the cloud may address (never rb.*, $* or _INBOX.*).",
    )


class InboundRule(_Reidentifying):
    """Lets cloud agents send requests to local subjects; no match means refused."""

    name: RuleName
    match: InboundMatch


class CaseMessage(_Model):
    subject: str
    headers: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any] | None = Field(None, description="The payload as an object.")
    payload_text: str | None = Field(
        None, description="The raw payload, for malformed-input cases."
    )

    @model_validator(mode="after")
    def _one_payload(self) -> CaseMessage:
        if (self.payload is None) == (self.payload_text is None):
            raise ValueError("give exactly one of 'payload' and 'payload_text'")
        return self


class TransformExpectation(_Model):
    path: str
    action: Action


class Expect(_Model):
    decision: Verdict
    rule: str | None = Field(None, description="Name of the rule expected to decide.")
    reason: str | None = Field(None, description="Expected reason, e.g. leak-guard:email.")
    destination: str | None = Field(
        None, description="A destination expected among the allowed ones."
    )
    destinations: tuple[str, ...] | None = Field(
        None, description="The exact allowed destinations."
    )
    absent: tuple[str, ...] = Field((), description="Paths that must not exist in the output.")
    present: tuple[str, ...] = Field((), description="Paths that must exist in the output.")
    values_absent: tuple[str, ...] = Field(
        (), description="Strings that must not appear anywhere in the output."
    )
    output: dict[str, Any] | None = Field(None, description="A fragment the output must contain.")
    transforms: tuple[TransformExpectation, ...] | None = None


class PolicyCase(_Model):
    name: str = Field(min_length=1)
    message: CaseMessage
    expect: Expect


class Spec(_Model):
    defaults: Defaults = Defaults()
    limits: Limits = Limits()
    classification_floors: tuple[ClassificationFloor, ...] = Field(
        (),
        description="Minimum classifications by subject; every matching floor applies, and "
        "Rb-Class can raise a message's classification above them but never lower it.",
    )
    destinations: dict[Name, Destination] = Field(default_factory=dict)
    keys: tuple[Name, ...] = Field(
        (), description="Names of on-prem keys used by hash and tokenize."
    )
    detectors: dict[Name, CustomDetector] = Field(
        default_factory=dict, description="Custom detectors, usable in mask and permit."
    )
    phone_regions: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="Regions (ISO 3166 codes such as GB, DE) in whose numbering plans a bare run "
        "of 10-11 digits counts as a phone number; default: US, GB, DE, FR, IT, ES, NL, BE, AT, "
        "CH, IE, SE, DK, CA.",
    )
    rules: tuple[Rule, ...] = Field(
        description="Ordered; the first match wins; no match means deny."
    )
    replies: tuple[ReplyRule, ...] = ()
    inbound: tuple[InboundRule, ...] = Field(
        (),
        description="Which local subjects cloud-initiated requests may address; none means none.",
    )
    tests: tuple[PolicyCase, ...] = ()

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [r for r in regions or () if r not in phone_plan_regions()]
        if unknown:
            raise ValueError(
                f"not a region with a numbering plan: {', '.join(map(repr, unknown))} "
                "(use ISO 3166 codes such as GB, DE, US)"
            )
        return regions


class ResidencyPolicy(_Model):
    """A data-residency policy: what may leave the site, where to, and in what form."""

    apiVersion: Literal["rbridge/v1"]
    kind: Literal["ResidencyPolicy"]
    metadata: Metadata
    spec: Spec


def json_schema() -> dict[str, Any]:
    """The JSON Schema of policy files, for editors and ``check-jsonschema``."""
    schema = ResidencyPolicy.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Residency Bridge residency policy",
        **schema,
    }
