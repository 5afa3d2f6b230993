"""The audit trail: one hash-chained JSON line per decision, written before anything is sent."""

from bridge.audit.trail import AuditInUseError, AuditTrail, AuditWriteError
from bridge.audit.verify import VerifyReport, trails_under, verify_paths

__all__ = [
    "AuditInUseError",
    "AuditTrail",
    "AuditWriteError",
    "VerifyReport",
    "trails_under",
    "verify_paths",
]
