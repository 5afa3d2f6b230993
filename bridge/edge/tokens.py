"""Reply tokens: where a reply must go, sealed so that only this site can read or forge one.

The cloud carries the token opaquely. It holds the local reply subject, the capability and the
original message id, and an expiry, encrypted and authenticated with AES-GCM under an on-prem
key (bound to the site's name), so the edge needs no state to route a reply, and a token that
was altered, made elsewhere, or has expired is refused.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.policy.keyring import KeyVersion

PREFIX = "r1."


@dataclass(frozen=True, slots=True)
class ReplyRoute:
    reply_to: str
    capability: str
    msg_id: str


class ReplyTokens:
    def __init__(self, key: KeyVersion, site: str, ttl_seconds: int) -> None:
        material = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"rbridge/v1 reply token"
        ).derive(key.material)
        self._aead = AESGCM(material)
        self._context = b"rbridge/v1 reply " + site.encode()
        self.ttl = ttl_seconds

    def seal(self, route: ReplyRoute) -> str:
        nonce = os.urandom(12)
        plain = orjson.dumps(
            [route.reply_to, route.capability, route.msg_id, int(time.time()) + self.ttl]
        )
        sealed = self._aead.encrypt(nonce, plain, self._context)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, token: str) -> ReplyRoute:
        """The route in ``token``; raises ValueError if it is malformed, forged or expired."""
        if not token.startswith(PREFIX) or len(token) > 2048:
            raise ValueError("not a reply token")
        body = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], self._context)
            reply_to, capability, msg_id, expires = orjson.loads(plain)
        except (ValueError, InvalidTag, TypeError):
            raise ValueError("the reply token was not made by this site, or was altered") from None
        if time.time() > expires:
            raise ValueError("the reply token has expired")
        return ReplyRoute(str(reply_to), str(capability), str(msg_id))
