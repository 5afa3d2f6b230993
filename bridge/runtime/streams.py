"""Creating or updating the JetStream streams the bridge relies on."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger("rbridge.streams")


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    subjects: list[str],
    *,
    duplicate_window: float = 120.0,
    max_age: float | None = None,
) -> api.StreamInfo:
    """Create ``name`` with file storage, or bring an existing one to this configuration."""
    config = api.StreamConfig(
        name=name,
        subjects=subjects,
        storage=api.StorageType.FILE,
        duplicate_window=duplicate_window,
        max_age=max_age,
    )
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        log.info("creating stream %s on %s", name, ", ".join(subjects))
        return await js.add_stream(config)
    current = info.config
    if (
        current.subjects != subjects
        or current.duplicate_window != duplicate_window
        or current.max_age != max_age
    ):
        try:
            return await js.update_stream(config)
        except BadRequestError as error:
            raise RuntimeError(
                f"stream {name} exists with a configuration that cannot be updated: {error.description}"
            ) from None
    return info
