"""Error types that cross the package boundary.

`RequestError` is why one request (or one series of it) gets no forecast: an HTTP status, a
short machine ``reason`` (the metrics label), a message safe to show the client, and the
``param`` it concerns where the protocol names one (``inputs[2].series[10]``). It comes in two
kinds: `InputError`, what the client did wrong (400/422, the message names the exact problem),
and `ServiceFault`, an unexpected failure of that request alone (500, or 507 when it ran out of
memory), made by `fault` from whatever was raised. `CheckpointError` is what is wrong with a
model file: it names the file and the fault.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

log = logging.getLogger(__name__)

#: 400: the bytes are not a readable CSV table (or JSON document) at all.
MALFORMED = 400
#: 422: a readable table that breaks the data contract.
UNPROCESSABLE = 422
#: An unexpected failure of one request (a bug or a broken environment, not the client's fault).
INTERNAL = int(HTTPStatus.INTERNAL_SERVER_ERROR)
#: The request ran out of memory; TorchServe answers a whole batch that runs out of memory with
#: the same status ("Out of resources"), here it is confined to the one request.
OUT_OF_MEMORY = int(HTTPStatus.INSUFFICIENT_STORAGE)


class RequestError(Exception):
    """Why a request (or one of its series) gets no forecast; safe to show to the client verbatim."""

    def __init__(self, message: str, *, status: int, reason: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.param = param

    def to_dict(self) -> dict:
        """The JSON error object of the CSV API: ``{"error": ..., "code": ...}``."""
        return {"error": self.message, "code": self.status}


class InputError(RequestError, ValueError):
    """A request that cannot be forecast because of what it contains (4xx)."""

    def __init__(
        self, message: str, *, status: int = UNPROCESSABLE, reason: str = "invalid", param: str | None = None
    ) -> None:
        super().__init__(message, status=status, reason=reason, param=param)


class ServiceFault(RequestError):
    """An unexpected failure of one request alone (5xx); its traceback has been logged."""


def fault(exc: BaseException) -> RequestError:
    """``exc`` as the error its request answers with: itself when it is a `RequestError`, else a
    `ServiceFault` (507 when it ran out of memory, else 500), logged with its traceback here,
    since the message tells the client it has been."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        log.error("a request ran out of memory: %s", exc)
        return ServiceFault(
            "The server ran out of memory for this request; retry later or send fewer rows.",
            status=OUT_OF_MEMORY,
            reason="out_of_memory",
        )
    log.error("a request failed unexpectedly", exc_info=exc)
    return ServiceFault(
        f"Internal error while forecasting this request ({type(exc).__name__}: {exc}); it has been logged.",
        status=INTERNAL,
        reason="internal",
    )


def shown(value: object, limit: int = 40) -> str:
    """A client's value as a message shows it: its repr, cut to ``limit`` characters; a JSON array
    or object by its kind (a client may send anything, nested as deep as a decoder allows)."""
    if isinstance(value, list | tuple):
        return f"a JSON array of {len(value)}"
    if isinstance(value, dict):
        return f"a JSON object of {len(value)} keys"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CheckpointError(ValueError):
    """A model file that must not be served, with the file named in the message."""
