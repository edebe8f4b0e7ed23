"""Shared runtime pieces of the suite: typed settings and the search-engine client."""

from infra.settings import SettingsError, from_env

__all__ = ["SettingsError", "from_env"]
