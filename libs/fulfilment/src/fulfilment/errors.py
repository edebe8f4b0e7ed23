"""The ways a command can be refused by the domain.

Each error carries a stable `code` (a machine-readable slug that clients can
switch on) and belongs to one of four kinds, so an adapter can translate a whole
kind at once without knowing every rule:

- `NotFound`: the command names an aggregate that does not exist;
- `NotPermitted`: the actor may not do this to this aggregate (cancel someone
  else's order);
- `Conflict`: the command is valid but the aggregate's current state refuses it
  (cancel a rejected order, confirm a cancelled one);
- `InvalidCommand`: the command contradicts itself whatever the state
  (two lines for the same SKU).

A shortage of stock is *not* an error: it is recorded as an event, because the
saga must react to it and the fact that it happened is worth keeping.
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
