"""What one request gets back: a status, the JSON body, and the reason of a refusal.

Every request ends in exactly one `Outcome`, whatever happened to it, so a server or the
offline CLI answers it without inspecting types:

* a forecast: 200, the response object (response.py), reason ``None``;
* a refusal (`InputError`): its 400/422, ``{"error": ..., "code": ...}``, its reason;
* an unexpected failure of this request alone: 507 (reason ``out_of_memory``) when it ran out
  of memory, else 500 (reason ``internal``), same body shape; its traceback is logged here,
  since the message tells the client it has been.

``reason`` is the metrics label of a request that got no forecast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus

from alm_forecaster.errors import InputError

log = logging.getLogger(__name__)

#: A forecast.
OK = int(HTTPStatus.OK)
#: An unexpected failure of one request (a bug or a broken environment, not the client's fault).
INTERNAL = int(HTTPStatus.INTERNAL_SERVER_ERROR)
#: The request ran out of memory; TorchServe answers a whole batch that runs out of memory with
#: the same status ("Out of resources"), here it is confined to the one request.
OUT_OF_MEMORY = int(HTTPStatus.INSUFFICIENT_STORAGE)


@dataclass(frozen=True)
class Outcome:
    """One request's answer: HTTP ``status``, JSON ``body``, and the ``reason`` it got no forecast."""

    status: int
    body: dict
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True for a forecast."""
        return self.reason is None

    @classmethod
    def forecast(cls, body: dict) -> Outcome:
        return cls(OK, body)

    @classmethod
    def from_error(cls, exc: BaseException) -> Outcome:
        """The answer to a request that raised ``exc``: its refusal for an `InputError`,
        otherwise an unexpected failure, logged with its traceback."""
        if isinstance(exc, InputError):
            return cls(exc.status, exc.to_dict(), exc.reason)
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            log.error("a request ran out of memory: %s", exc)
            return cls._failure(
                OUT_OF_MEMORY,
                "The server ran out of memory for this request; retry later or send fewer rows.",
                "out_of_memory",
            )
        log.error("a request failed unexpectedly", exc_info=exc)
        return cls._failure(
            INTERNAL,
            f"Internal error while forecasting this request ({type(exc).__name__}: {exc}); it has been logged.",
            "internal",
        )

    @classmethod
    def _failure(cls, status: int, message: str, reason: str) -> Outcome:
        return cls(status, {"error": message, "code": status}, reason)
