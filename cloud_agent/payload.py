"""What a cloud agent receives: redacted JSON in which pseudonyms are visibly pseudonyms.

The edge bridge replaced some values before the message left the site: ``tok:v<N>:…`` tokens
(reversible, but only on-prem, with a key the cloud never sees) and ``hmac:v<N>:…`` digests
(one-way, stable: equal inputs give equal digests, so they can be compared and counted). Here
they arrive as :class:`Token` and :class:`Digest`, ``str`` subclasses, so code can tell them apart
and pass tokens back unchanged: the site turns the tokens its reply rules name back into the
original values.

>>> document = with_pseudonyms({"claimant": {"name": "tok:v1:abcd"}, "amount": 10})
>>> isinstance(document["claimant"]["name"], Token)
True
>>> tokens_in(document)
[('$.claimant.name', 'tok:v1:abcd')]
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"tok:v\d{1,9}:[a-p]+")
_DIGEST = re.compile(r"hmac:v\d{1,9}:[a-p]+")


class Token(str):
    """A value tokenized on-prem. Opaque here; send it back as it is to have it re-identified."""

    __slots__ = ()


class Digest(str):
    """A keyed one-way digest made on-prem: comparable for equality, never reversible."""

    __slots__ = ()


def _mark(value: Any) -> Any:
    if type(value) is str:
        if _TOKEN.fullmatch(value):
            return Token(value)
        if _DIGEST.fullmatch(value):
            return Digest(value)
        return value
    if type(value) is dict:
        return {key: _mark(item) for key, item in value.items()}
    if type(value) is list:
        return [_mark(item) for item in value]
    return value


def with_pseudonyms(document: Any) -> Any:
    """A copy of ``document`` where tokens are :class:`Token` and digests :class:`Digest`."""
    return _mark(document)


def tokens_in(document: Any, path: str = "$") -> list[tuple[str, Token]]:
    """Every token in ``document`` with its path, in document order."""
    found: list[tuple[str, Token]] = []
    if isinstance(document, Token):
        found.append((path, document))
    elif isinstance(document, dict):
        for key, item in document.items():
            found.extend(tokens_in(item, f"{path}.{key}"))
    elif isinstance(document, list):
        for index, item in enumerate(document):
            found.extend(tokens_in(item, f"{path}[{index}]"))
    return found
