from tests.link.conftest import _stop_everything, pki

__all__ = ["_stop_everything", "pki"]
