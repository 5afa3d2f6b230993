"""Creating or updating the JetStream streams the bridge relies on, with their retention and bounds.

The bridge's work streams (``RB_OUT``, ``RB_IN``, ``RB_REPLY``) use *interest* retention: a
message is removed once every consumer interested in it has acked it, so nothing delivered stays
stored. Under interest retention a message that no consumer wants is dropped as it is published,
so a stream is created with limits retention, its consumers are added, and only then is it
switched to interest: there is no moment in which a publish would be dropped. An existing stream
of an older version (limits retention, unbounded) is brought to this configuration in place
(JetStream allows limits -> interest); what changed is logged.

Bounds: ``max_bytes`` and ``max_age`` (0: none) with discard *new*: a full stream refuses new
messages and keeps every one it holds; ``discard_old`` is the operator's choice to drop the
oldest instead. Lowering ``max_bytes`` below what a stream holds removes nothing (discard new).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from bridge.errors import RbridgeError

log = logging.getLogger("rbridge.streams")


_NO_STORAGE = 10047  # "insufficient storage resources available"
_NO_PEERS = frozenset({10005, 10023, 10074})  # not enough servers / no cluster for the replicas


def replicas_problem(name: str, replicas: int, error: APIError) -> str:
    """Why a stream or bucket with ``replicas`` copies could not be made, for an operator."""
    if error.err_code in _NO_PEERS or "replica" in (error.description or "").lower():
        return (
            f"{name} wants {replicas} replicas, more than the NATS servers with JetStream there "
            f"are to hold them ({error.description}): set nats.replicas lower, or add servers "
            "to the cluster"
        )
    return f"{name} cannot be created: {error.description}"


class StreamConfigError(RbridgeError):
    """An existing stream cannot be brought to the bridge's configuration in place."""


@dataclass(frozen=True)
class Bounds:
    """How much a stream may hold: ``max_bytes`` (-1: no bound), ``max_age`` in seconds (0: none)."""

    max_bytes: int = -1
    max_age: float = 0.0
    discard_old: bool = False


@dataclass(frozen=True)
class StreamSpec:
    """What the bridge wants a stream to be."""

    name: str
    subjects: list[str]
    interest: bool = False
    bounds: Bounds = Bounds()
    duplicate_window: float = 120.0
    replicas: int = 1

    def config(self, *, interest: bool | None = None) -> api.StreamConfig:
        wanted = self.interest if interest is None else interest
        return api.StreamConfig(
            name=self.name,
            subjects=self.subjects,
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.INTEREST if wanted else api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD if self.bounds.discard_old else api.DiscardPolicy.NEW,
            max_bytes=self.bounds.max_bytes,
            max_age=self.bounds.max_age,
            duplicate_window=self.duplicate_window,
            num_replicas=self.replicas,
        )


def _shown(config: api.StreamConfig) -> dict[str, object]:
    return {
        "subjects": list(config.subjects or []),
        "retention": getattr(config.retention, "value", config.retention) or "limits",
        "discard": getattr(config.discard, "value", config.discard) or "old",
        "max_bytes": config.max_bytes if config.max_bytes not in (None, 0) else -1,
        "max_age": float(config.max_age or 0.0),
        "duplicate_window": float(config.duplicate_window or 0.0),
    }


async def ensure_stream(
    js: JetStreamContext,
    spec: StreamSpec,
    consumers: Sequence[api.ConsumerConfig] = (),
) -> api.StreamInfo:
    """Create the stream, or bring an existing one to ``spec``; ``consumers`` exist before an
    interest stream takes any message (created, or brought to their configuration).

    Raises StreamConfigError naming the stream when JetStream refuses the change (a work-queue stream
    cannot become an interest stream in place, for one).
    """
    created = False
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        log.info(
            "creating stream %s on %s (%s retention)",
            spec.name,
            ", ".join(spec.subjects),
            "interest" if spec.interest else "limits",
        )
        try:
            info = await js.add_stream(spec.config(interest=False))
        except APIError as error:
            raise StreamConfigError(
                replicas_problem(f"stream {spec.name}", spec.replicas, error)
                + (
                    " (JetStream reserves max_bytes on its store: lower the stream's "
                    "max_bytes or give the store more room)"
                    if error.err_code == _NO_STORAGE
                    else ""
                )
            ) from None
        created = True
    else:
        report_replicas(spec.name, info.config.num_replicas or 1, spec.replicas)
    for consumer in consumers:
        try:
            await js.add_consumer(spec.name, config=consumer)
        except APIError as error:
            raise StreamConfigError(
                f"stream {spec.name}: cannot create or update its consumer "
                f"{consumer.durable_name}: {error.description}"
            ) from None
    wanted = spec.config()
    wanted.num_replicas = info.config.num_replicas  # reported above, never changed here
    current, target = _shown(info.config), _shown(wanted)
    if current == target:
        return info
    changes = ", ".join(
        f"{key} {current[key]} -> {target[key]}" for key in target if current[key] != target[key]
    )
    if not created and target["retention"] != current["retention"]:
        log.warning(
            "stream %s: changing %s (an older configuration, or a new setting; delivered messages "
            "are removed once acked)",
            spec.name,
            changes,
        )
    else:
        log.info("stream %s: applying %s", spec.name, changes)
    try:
        return await js.update_stream(wanted)
    except APIError as error:
        raise StreamConfigError(
            f"stream {spec.name} exists with a configuration that cannot be changed to this "
            f"one ({changes}): {error.description}; see the operator's guide, 'Retention'"
        ) from None


def report_replicas(name: str, current: int, wanted: int) -> None:
    """An existing stream keeps its replicas: changing them moves its data, which is the
    operator's call (the guide shows ``nats stream edit NAME --replicas N``)."""
    if current != wanted:
        log.warning(
            "stream %s has %d replica(s) and the settings ask for %d: left as it is; scale it "
            "with `nats stream edit %s --replicas %d` (see the guide, 'High availability')",
            name, current, wanted, name, wanted,
        )  # fmt: skip


async def consumers_of(js: JetStreamContext, stream: str) -> list[api.ConsumerInfo]:
    """Every consumer of ``stream`` (empty when it does not exist)."""
    try:
        return list(await js.consumers_info(stream))
    except NotFoundError:
        return []


def filters_of(consumer: api.ConsumerInfo) -> list[str]:
    config = consumer.config
    found = list(config.filter_subjects or [])
    if config.filter_subject:
        found.append(config.filter_subject)
    return found or [">"]


async def warn_of_other_consumers(js: JetStreamContext, stream: str, expected: set[str]) -> None:
    """Log each consumer of ``stream`` the bridge did not make: under interest retention it
    keeps every message it has not acked (a consumer of an older configuration, say)."""
    for consumer in await consumers_of(js, stream):
        if consumer.name not in expected:
            log.warning(
                "stream %s has another consumer, %s (%d messages not yet acked by it): "
                "messages stay stored until every consumer acked them; delete it if nothing "
                "uses it",
                stream,
                consumer.name,
                (consumer.num_pending or 0) + (consumer.num_ack_pending or 0),
            )
