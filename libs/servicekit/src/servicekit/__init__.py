"""What every service process of the suite needs, in one place.

See ``docs/architecture.md`` ("Adding a service") for how a service is put together from it.
"""

from servicekit.settings import SettingsError, from_env

__all__ = ["SettingsError", "from_env"]
