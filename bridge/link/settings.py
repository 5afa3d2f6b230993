"""Link tuning, and the gRPC options derived from it, identical in meaning on both ends.

Keepalive is configured on both sides together: the edge pings every ``keepalive_time`` and
declares the link dead when a ping is not answered within ``keepalive_timeout`` (so a silent
blackhole is noticed within their sum, 20 s by default); the gateway accepts pings that often
and pings back. The gateway ends every connection after ``max_connection_age`` (5 min), so a
revoked or rotated certificate is handshaken again within that time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkSettings:
    window: int = 4096
    """Envelopes sent and not yet answered, per direction; senders wait beyond it."""
    max_batch: int = 256
    linger: float = 0.002
    """Seconds a batch waits for more envelopes before it is sent anyway."""
    max_frame_bytes: int = 32 << 20
    max_envelope_bytes: int = (1 << 20) + (64 << 10)
    keepalive_time: float = 10.0
    keepalive_timeout: float = 10.0
    max_connection_age: float = 300.0
    max_connection_age_grace: float = 30.0
    hello_timeout: float = 10.0
    backoff_initial: float = 0.2
    backoff_max: float = 15.0
    revocation_check_interval: float = 5.0
    site_buffer_bytes: int = 64 << 20
    """Payload bytes of one site's envelopes a gateway holds unanswered before it stops reading
    that site's stream (HTTP/2 flow control then holds the edge back); with ``window``, what
    bounds a connected site's memory at the gateway."""
    turn_envelopes: int = 64
    """Envelopes a gateway stores from one stream per turn; streams take turns in order."""
    store_slots: int = 4
    """Turns a gateway runs at once."""
    busy_share: float = 0.5
    """While other sites send too, the most of the gateway's time one stream's turns take."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.max_batch < 1 or self.max_batch > self.window:
            raise ValueError("window and max_batch must be positive, with max_batch <= window")
        if self.site_buffer_bytes < 1 or self.turn_envelopes < 1 or self.store_slots < 1:
            raise ValueError("site_buffer_bytes, turn_envelopes and store_slots must be positive")
        if not 0 < self.busy_share <= 1:
            raise ValueError("busy_share must be more than 0 and at most 1")
        if self.max_envelope_bytes * self.max_batch > self.max_frame_bytes:
            object.__setattr__(
                self, "max_frame_bytes", self.max_envelope_bytes * self.max_batch + (1 << 20)
            )

    def _common(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            # Recent gRPC cores time keepalive pings out with this one (60 s by default), not
            # with keepalive_timeout alone: without it a blackhole goes unnoticed for a minute.
            ("grpc.http2.ping_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", self.max_frame_bytes),
            ("grpc.max_send_message_length", self.max_frame_bytes),
        ]

    def client_options(self) -> list[tuple[str, int]]:
        return [*self._common(), ("grpc.enable_retries", 0)]

    def server_options(self) -> list[tuple[str, int]]:
        return [
            *self._common(),
            # Accept the edge's pings at its interval (with room for timer jitter).
            ("grpc.http2.min_recv_ping_interval_without_data_ms", int(self.keepalive_time * 500)),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.max_connection_age_ms", int(self.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace * 1000)),
        ]
