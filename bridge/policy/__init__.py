"""The residency policy core: pure and synchronous, from a message to a :class:`Decision`.

No asyncio, sockets, NATS, gRPC or Prometheus here (a check keeps it so); it reads policy and
bundle files and nothing else.
"""

from bridge.policy.bundle import VerifiedBundle, sign_bundle, verify_bundle
from bridge.policy.bundled import BundledPolicies, load_bundle
from bridge.policy.cases import CaseReport, run_cases
from bridge.policy.engine import Decision, Engine, Message, ReplyDecision
from bridge.policy.explain import Explanation, explain
from bridge.policy.keyring import KeyRing, KeyVersion, MemoryKeyRing
from bridge.policy.loader import LoadedPolicy, load_policies, load_policy_bytes, load_policy_file
from bridge.policy.model import ResidencyPolicy, json_schema
from bridge.policy.payload import PayloadError, PayloadLimits, parse_payload

__all__ = [
    "BundledPolicies",
    "CaseReport",
    "Decision",
    "Engine",
    "Explanation",
    "KeyRing",
    "KeyVersion",
    "LoadedPolicy",
    "MemoryKeyRing",
    "Message",
    "PayloadError",
    "PayloadLimits",
    "ReplyDecision",
    "ResidencyPolicy",
    "VerifiedBundle",
    "explain",
    "json_schema",
    "load_bundle",
    "load_policies",
    "load_policy_bytes",
    "load_policy_file",
    "parse_payload",
    "run_cases",
    "sign_bundle",
    "verify_bundle",
]
