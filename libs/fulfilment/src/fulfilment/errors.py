"""The ways a command can be refused by the domain.

Each error has a stable `code` and one of four kinds, so an adapter can translate a
whole kind: `NotFound` (no such aggregate), `NotPermitted` (not this actor's to do),
`Conflict` (the current state refuses it) and `InvalidCommand` (self-contradictory).
A stock shortage is not an error but an event: the saga reacts to it.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "DomainError",
    "InvalidCommand",
    "NotFound",
    "NotPermitted",
]


class DomainError(Exception):
    """A command the domain refuses; `code` names the rule, the message explains it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(DomainError):
    """The command names an aggregate that does not exist."""


class NotPermitted(DomainError):
    """The actor may not act on this aggregate."""


class Conflict(DomainError):
    """The aggregate's current state refuses the command."""


class InvalidCommand(DomainError):
    """The command breaks a rule whatever the state."""
