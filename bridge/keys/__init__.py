"""The on-prem key store: named, versioned key material in files only the bridge can read."""

from bridge.keys.store import FileKeyStore, KeyInfo

__all__ = ["FileKeyStore", "KeyInfo"]
