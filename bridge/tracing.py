"""Traces across agents, bridge and cloud: OpenTelemetry spans joined by W3C trace context.

Off unless an OTLP endpoint is configured (the runtimes' ``tracing.endpoint``, or the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_SDK_DISABLED``
turns it off). Off, every call here returns at once (one global read), so tracing costs nothing
measurable. On, spans go through a batching processor to the OTLP gRPC endpoint, sampled by
``sample_ratio`` (or ``OTEL_TRACES_SAMPLER_ARG``; default 1.0) at the root and following the
parent's decision everywhere else, so a trace is kept or dropped whole.

The context travels as ``traceparent``/``tracestate`` NATS headers between agents and the
bridge, in the link envelope between edge and gateway, and as headers on ``RB_IN`` and
``RB_REPLY``. Span attributes name rules, verdicts, classes, actions, codes and subjects; never a
value of a message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bridge import __version__

__all__ = ["Span", "SpanKind"]

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
HEADERS = ("traceparent", "tracestate")


def configured_endpoint(endpoint: str | None = None) -> str | None:
    """The OTLP endpoint tracing would use: the one given, else the environment's; None: off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return (
        endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def configure(
    service: str, endpoint: str | None = None, sample_ratio: float | None = None
) -> str | None:
    """Start tracing for this process as ``service``; returns the endpoint, or None when off.

    A process traces to one endpoint: a second call (an agent SDK inside a runtime's process)
    keeps the first configuration.
    """
    global _provider, _tracer
    if _tracer is not None:
        return configured_endpoint(endpoint)
    chosen = configured_endpoint(endpoint)
    if chosen is None:
        return None
    if sample_ratio is None:
        try:
            sample_ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            sample_ratio = 1.0
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}),
        sampler=ParentBased(TraceIdRatioBased(min(max(sample_ratio, 0.0), 1.0))),
    )
    exporter = OTLPSpanExporter(endpoint=chosen, insecure=not chosen.startswith("https://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("rbridge", __version__)
    return chosen


def enabled() -> bool:
    return _tracer is not None


def flush(timeout_seconds: float = 10.0) -> None:
    if _provider is not None:
        _provider.force_flush(int(timeout_seconds * 1000))


def shutdown() -> None:
    """Export what is pending and stop tracing in this process."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def sampled(headers: Mapping[str, str] | None) -> bool | None:
    """Whether the trace a message belongs to is being recorded (the sampled flag of its
    ``traceparent``); None when it carries none or tracing is off. A hop of the bridge records
    spans only for a sampled trace: the decision is taken once, where the trace starts, and an
    unsampled message costs the hops after it nothing."""
    if _tracer is None or not headers:
        return None
    value = headers.get("traceparent", "")
    if len(value) != 55:
        return None
    try:
        return bool(int(value[53:], 16) & 1)
    except ValueError:
        return None


def _parent(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    if headers is None:
        return None
    carrier = {name: headers[name] for name in HEADERS if name in headers}
    return _propagator.extract(carrier) if carrier else None


@contextmanager
def span(
    name: str,
    headers: Mapping[str, str] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span for the block, the current one inside it; its parent is the trace context in
    ``headers`` when they carry one, else the current span. Yields None when tracing is off."""
    if _tracer is None:
        yield None
        return
    # Never the exception's message or traceback in a span (they may quote a value): its type.
    with _tracer.start_as_current_span(
        name,
        context=_parent(headers),
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as error:
            current.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise


def start(
    name: str,
    headers: Mapping[str, str] | None = None,
    *,
    parent: Span | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span | None:
    """A span that outlives the block that starts it (ended by :func:`end`); None when off."""
    if _tracer is None:
        return None
    context = trace.set_span_in_context(parent) if parent is not None else _parent(headers)
    return _tracer.start_span(name, context=context, kind=kind, attributes=attributes)


def end(current: Span | None, error: str | None = None, **attributes: Any) -> None:
    if current is None:
        return
    if attributes:
        current.set_attributes(attributes)
    if error is not None:
        current.set_status(Status(StatusCode.ERROR, error))
    current.end()


def inject(headers: MutableMapping[str, str], current: Span | None = None) -> None:
    """Write the trace context of ``current`` (or the current span) into ``headers``."""
    if _tracer is None:
        return
    context = trace.set_span_in_context(current) if current is not None else None
    _propagator.inject(headers, context=context)


def traceparent(current: Span | None) -> str:
    """The W3C ``traceparent`` of ``current`` ("" when off or None)."""
    if current is None:
        return ""
    carrier: dict[str, str] = {}
    inject(carrier, current)
    return carrier.get("traceparent", "")


def log_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, for a log line; None when there is none."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
