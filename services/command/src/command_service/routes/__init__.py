"""The HTTP endpoints: one per command, plus health."""
