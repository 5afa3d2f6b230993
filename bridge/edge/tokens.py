"""Reply tokens: where a reply must go, sealed so that only this site can read or forge one.

The cloud carries the token opaquely. It holds the local reply subject, the capability and the
original message id, and an expiry, encrypted and authenticated with AES-GCM under an on-prem
key (bound to the site's name), so the edge needs no state to route a reply, and a token that
was altered, made elsewhere, or has expired is refused.

A token is good for one reply. Anyone who can publish on the cloud's reply subject sees tokens
in the messages it handles, so the edge remembers spent tokens (by their random nonce) for as
long as a token lives, in a JetStream key-value bucket on the local NATS: it survives a restart
of the edge bridge and is shared by all its replicas. The first reply spends the token; the same
reply delivered again (a link that broke before the ack) is recognised by its fingerprint and
delivered again, as at-least-once delivery demands; any other reply with that token is refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from bridge.errors import RbridgeError
from bridge.policy.keyring import KeyVersion
from bridge.runtime.publisher import StreamPublisher
from bridge.runtime.streams import StreamConfigError, replicas_problem, report_replicas

PREFIX = "r1."


#: The local key-value bucket of spent reply tokens (key: the token's nonce, value: the
#: fingerprint of the reply that spent it).
SPENT_TOKENS_BUCKET = "rb_reply_tokens"


@dataclass(frozen=True, slots=True)
class ReplyRoute:
    reply_to: str
    capability: str
    msg_id: str
    #: The token's nonce in hex: unique per token, the key under which it is spent.
    token_id: str = ""


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
        return ReplyRoute(str(reply_to), str(capability), str(msg_id), raw[:12].hex())


def reply_fingerprint(envelope_id: str, payload: bytes) -> str:
    """What identifies one reply across redeliveries: its id (with the stream sequence the
    gateway adds) and its bytes."""
    digest = hashlib.sha256(envelope_id.encode("utf-8", "replace") + b"\n" + payload)
    return digest.hexdigest()[:32]


class SpentTokens(Protocol):
    """Remembers which reply spent each token."""

    async def spend_many(self, items: Sequence[tuple[str, str]]) -> list[bool | Exception]:
        """For each (token id, fingerprint of the reply): True if the token was unspent (now
        spent by this reply) or spent by this very reply; False if another reply spent it; the
        exception if it could not be recorded."""
        ...


class MemorySpentTokens:
    """Spent tokens in memory, for tests and single-process tools."""

    def __init__(self) -> None:
        self.spent: dict[str, str] = {}

    async def spend_many(self, items: Sequence[tuple[str, str]]) -> list[bool | Exception]:
        return [
            self.spent.setdefault(token, fingerprint) == fingerprint for token, fingerprint in items
        ]


class SpentTokensUnavailable(RbridgeError):
    """The spent-token bucket did not store a spend."""

    retriable = True


class JetStreamSpentTokens:
    """Spent tokens in a key-value bucket of the local NATS, kept as long as tokens live.

    A batch of replies spends its tokens with one burst of publishes, each creating its key
    only if the key is new (``Nats-Expected-Last-Subject-Sequence: 0``), and the PubAcks
    gathered on one inbox; a key that exists is read back to tell a redelivery of the same
    reply (the same fingerprint) from another reply."""

    def __init__(self, bucket: KeyValue, publisher: StreamPublisher) -> None:
        self.bucket = bucket
        self.publisher = publisher
        self._subject = f"$KV.{SPENT_TOKENS_BUCKET}."

    @classmethod
    async def open(
        cls, js: JetStreamContext, ttl_seconds: int, publisher: StreamPublisher, replicas: int = 1
    ) -> JetStreamSpentTokens:
        """The bucket, created if needed; an existing one that forgets sooner is extended."""
        try:
            bucket = await js.key_value(SPENT_TOKENS_BUCKET)
        except (BucketNotFoundError, NotFoundError):
            try:
                bucket = await js.create_key_value(
                    api.KeyValueConfig(
                        bucket=SPENT_TOKENS_BUCKET,
                        history=1,
                        ttl=ttl_seconds,
                        storage=api.StorageType.FILE,
                        replicas=replicas,
                    )
                )
            except APIError as error:
                problem = replicas_problem(f"bucket {SPENT_TOKENS_BUCKET}", replicas, error)
                raise StreamConfigError(problem) from None
            return cls(bucket, publisher)
        stream = f"KV_{SPENT_TOKENS_BUCKET}"
        info = await js.stream_info(stream)
        report_replicas(stream, info.config.num_replicas or 1, replicas)
        max_age = info.config.max_age or 0
        if 0 < max_age < ttl_seconds:
            # Spent tokens must be remembered at least as long as tokens are valid.
            info.config.max_age = ttl_seconds
            await js.update_stream(info.config)
        return cls(bucket, publisher)

    async def spend_many(self, items: Sequence[tuple[str, str]]) -> list[bool | Exception]:
        problems = await self.publisher.publish_many(
            [
                (self._subject + token, fingerprint.encode(), _CREATE_ONLY)
                for token, fingerprint in items
            ]
        )
        results: list[bool | Exception] = []
        for (token, fingerprint), problem in zip(items, problems, strict=True):
            if problem is None:
                results.append(True)
            elif "wrong last sequence" in problem:  # spent before: by this reply, or another?
                try:
                    entry = await self.bucket.get(token)
                    results.append(entry.value == fingerprint.encode())
                except Exception as error:
                    results.append(error)
            else:
                results.append(SpentTokensUnavailable(problem))
        return results


_CREATE_ONLY = {"Nats-Expected-Last-Subject-Sequence": "0"}
