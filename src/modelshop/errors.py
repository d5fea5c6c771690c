"""The one error hierarchy of modelshop.

    ModelshopError                  500 internal
    ├── ValidationError             422 validation   bad input: says what to fix
    │   └── PayloadTooLarge         413 payload_too_large
    ├── NotFound                    404 not_found
    ├── Conflict                    409 conflict
    ├── Unauthorized                401 unauthorized
    ├── Forbidden                   403 forbidden
    ├── PaymentRequired             402 payment_required   quota or prepaid balance exhausted
    │   └── QuotaExceeded           402 quota_exceeded
    ├── RateLimited                 429 rate_limited       carries retry_after seconds
    │   └── Overloaded              429 overloaded         server queue full (backpressure)
    ├── ServiceUnavailable          503 service_unavailable  a store it needs (Redis) is unreachable
    ├── ModelError                  500 model              the model failed at inference
    └── UpstreamFailed              502 upstream_failed    every upstream provider of a model failed
        └── UpstreamTimeout         504 upstream_timeout   ... and the last one by timing out

HTTP status and `error_type` are attributes of the class, so the mapping to HTTP lives in
exactly one place (here) and the server's single exception handler reads it. The CLI prints
`error: <message>` on one line and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ModelshopError(Exception):
    status_code = 500
    error_type = "internal"
    retry_after: float | None = None   # seconds; the server sends it as Retry-After

    def __init__(self, message: str, *, retry_after: float | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        if retry_after is not None:
            self.retry_after = retry_after

    def to_body(self) -> dict[str, object]:
        return {"error": self.message, "error_type": self.error_type}


class ValidationError(ModelshopError):
    status_code = 422
    error_type = "validation"


class PayloadTooLarge(ValidationError):
    status_code = 413
    error_type = "payload_too_large"


class NotFound(ModelshopError):
    status_code = 404
    error_type = "not_found"


class Conflict(ModelshopError):
    status_code = 409
    error_type = "conflict"


class Unauthorized(ModelshopError):
    status_code = 401
    error_type = "unauthorized"


class Forbidden(ModelshopError):
    status_code = 403
    error_type = "forbidden"


class PaymentRequired(ModelshopError):
    status_code = 402
    error_type = "payment_required"


class QuotaExceeded(PaymentRequired):
    error_type = "quota_exceeded"


class RateLimited(ModelshopError):
    status_code = 429
    error_type = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0, **extra: object) -> None:
        super().__init__(message, retry_after=retry_after, **extra)


class Overloaded(RateLimited):
    error_type = "overloaded"


class ServiceUnavailable(ModelshopError):
    """A store the call needs cannot be reached (e.g. Redis for quotas); the same call may pass later."""

    status_code = 503
    error_type = "service_unavailable"


class ModelError(ModelshopError):
    status_code = 500
    error_type = "model"


class UpstreamFailed(ModelshopError):
    """The gateway tried every upstream of a model (its fallbacks included) and none answered."""

    status_code = 502
    error_type = "upstream_failed"


class UpstreamTimeout(UpstreamFailed):
    status_code = 504
    error_type = "upstream_timeout"


def did_you_mean(wanted: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(wanted, list(choices), n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if wanted.lower() in lowered:
            close = [lowered[wanted.lower()]]
    return f' (did you mean "{close[0]}"?)' if close else ""
