"""The sandbox's settings (`SANDBOX_*`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from servicekit.settings import ServiceSettings, from_env

__all__ = ["SandboxSettings", "load_settings"]

Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]


class SandboxSettings(ServiceSettings, frozen=True, kw_only=True):
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8006
    sandbox_secret: Annotated[str, msgspec.Meta(min_length=16)]  # signs the webhooks
    sandbox_latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 200.0  # before answering
    sandbox_jitter_ms: Annotated[float, msgspec.Meta(ge=0)] = 100.0  # added, uniformly drawn
    sandbox_decline_rate: Rate = 0.0
    sandbox_silence_rate: Rate = 0.0  # share of requests never answered
    sandbox_callback_attempts: Annotated[int, msgspec.Meta(ge=1, le=50)] = 12
    sandbox_seed: int | None = None


def load_settings() -> SandboxSettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(SandboxSettings, prefix="SANDBOX_")
