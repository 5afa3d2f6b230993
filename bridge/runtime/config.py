"""Loading a runtime's settings: a YAML file, overridden by ``RBRIDGE_…`` environment variables.

Nested keys use ``__`` in variable names (``RBRIDGE_NATS__URL``). Problems are reported all at
once, one line each, naming the key and the source file; nothing starts on a bad configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.errors import RbridgeError
from bridge.runtime.streams import Bounds

T = TypeVar("T", bound="RuntimeSettings")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(RbridgeError):
    """A configuration file or variable is invalid; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSection(Section):
    """The runtime's NATS server and identity (the same for the edge and the gateway)."""

    url: str = "nats://127.0.0.1:4222"
    servers: list[str] = Field(
        default_factory=list,
        description="the members of a NATS cluster (nats://host:port each), instead of url; the "
        "runtime connects to any and moves to another when one goes",
    )
    credentials: Path | None = Field(None, description="NATS user credentials file (.creds)")
    nkey_seed: Path | None = Field(None, description="file holding an nkey seed")
    replicas: int | None = Field(
        None,
        ge=1,
        le=5,
        description="copies JetStream keeps of each stream and bucket the runtime creates "
        "(default: 3 on a cluster, 1 on a single server); existing ones are reported, not changed",
    )

    @property
    def address(self) -> str:
        """The server URL, or the cluster's as one comma-separated list."""
        return ",".join(self.servers) if self.servers else self.url

    @field_validator("servers")
    @classmethod
    def _urls(cls, servers: list[str]) -> list[str]:
        for server in servers:
            if "://" not in server or "," in server:
                raise ValueError(f"expected nats://host:port, got {server!r}")
        return servers


class TLSSection(Section):
    """The runtime's certificate, its key and the pinned CA (PEM files)."""

    cert: Path
    key: Path
    ca: Path


class TracingSection(Section):
    """Where traces go (OpenTelemetry, OTLP over gRPC); off unless an endpoint is given here or
    in OTEL_EXPORTER_OTLP_ENDPOINT."""

    endpoint: str | None = Field(
        None, description="OTLP gRPC endpoint, e.g. http://127.0.0.1:4317 (https: with TLS)"
    )
    sample_ratio: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of traces kept, decided where a trace starts (default: "
        "OTEL_TRACES_SAMPLER_ARG, else 1.0)",
    )

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected http://host:port or https://host:port, got {value!r}")
        return value


class StreamSection(Section):
    """How much one of the bridge's streams may hold; what is delivered is removed anyway."""

    max_bytes: int = Field(
        1 << 30,
        ge=-1,
        description="bytes the stream may hold (-1: no bound); when full, new messages are "
        "refused and none already stored is dropped",
    )
    max_age_seconds: int = Field(
        0, ge=0, description="remove a message waiting longer than this (0: never)"
    )
    discard_old: bool = Field(
        False,
        description="when full, drop the oldest waiting messages instead of refusing new ones "
        "(what is dropped is lost)",
    )

    def bounds(self) -> Bounds:
        return Bounds(self.max_bytes, float(self.max_age_seconds), self.discard_old)


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RBRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    # Checked here, so that --check-config refuses what start-up would fail on.
    @field_validator("log_level", check_fields=False)
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.lower()

    @field_validator("http", "listen", "health_listen", check_fields=False)
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port (port 0-65535), got {value!r}")
        return value

    @classmethod
    def settings_customise_sources(  # the signature is pydantic-settings' own
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings)

    @classmethod
    def load(cls: type[T], path: str | Path | None) -> T:
        data: dict[str, Any] = {}
        source = str(path) if path is not None else "(environment)"
        if path is not None:
            try:
                text = Path(path).read_text()
            except OSError as error:
                raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
                raise ConfigError(
                    [f"{path}{where}: not valid YAML: {getattr(error, 'problem', error)}"]
                ) from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError([f"{path}: the configuration must be a mapping"])
            data = loaded or {}
        try:
            return cls(**data)
        except ValidationError as error:
            problems = []
            for item in error.errors(include_url=False):
                key = ".".join(str(part) for part in item["loc"]) or "(top)"
                message = (
                    "unknown key"
                    if item["type"] == "extra_forbidden"
                    else item["msg"].removeprefix("Value error, ")
                )
                problems.append(f"{source}: {key}: {message}")
            raise ConfigError(problems) from None
