"""The audit trail: one hash-chained JSON line per decision, written before anything is sent."""

from bridge.audit.trail import AuditTrail, AuditWriteError
from bridge.audit.verify import VerifyReport, verify_paths

__all__ = ["AuditTrail", "AuditWriteError", "VerifyReport", "verify_paths"]
