"""Settings come from the environment and name the variable that is wrong."""

from __future__ import annotations

import pytest
from command_service.settings import CommandSettings
from servicekit.settings import SettingsError, from_env


def test_settings_come_from_the_environment() -> None:
    environ = {
        "DATABASE_URL": "postgresql://u:p@h:5432/d",
        "REDIS_URL": "redis://h:6379/0",
        "JWT_ISSUER": "i",
        "JWT_AUDIENCE": "a",
        "PORT": "9000",
        "JWT_ALGORITHMS": "HS256, RS256",
    }
    settings = from_env(CommandSettings, environ)

    assert (settings.port, settings.algorithms) == (9000, ("HS256", "RS256"))
    with pytest.raises(SettingsError, match="PORT"):
        from_env(CommandSettings, {**environ, "PORT": "http"})
