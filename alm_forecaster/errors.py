"""Error types that cross the package boundary.

`InputError` is what a client did wrong: it carries the HTTP status and a short machine
reason (used as a metrics label), and its message names the exact problem. `CheckpointError`
is what is wrong with a model file: it names the file and the fault.
"""

from __future__ import annotations

#: 400: the bytes are not a readable CSV table at all.
MALFORMED = 400
#: 422: a readable table that breaks the data contract.
UNPROCESSABLE = 422


class InputError(ValueError):
    """A request that cannot be forecast; safe to show to the client verbatim."""

    def __init__(self, message: str, *, status: int = UNPROCESSABLE, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason

    def to_dict(self) -> dict:
        """The JSON error object of the API: ``{"error": ..., "code": ...}``."""
        return {"error": self.message, "code": self.status}


class CheckpointError(ValueError):
    """A model file that must not be served, with the file named in the message."""
