"""The HTTP routes, one module per resource: predict (TEI and Hugging Face shapes), embeddings
(OpenAI shape), explain, and ops (health, info, metrics)."""

from modelshop.serve.schemas import ErrorBody

# The error answers each metered route may give, for /openapi.json (the body is always ErrorBody).
ERRORS = {code: {"model": ErrorBody, "description": why} for code, why in {
    401: "missing or invalid API key", 402: "quota or prepaid balance exhausted", 403: "key outside its scope",
    404: "unknown model", 413: "too many inputs, or an input too long (in characters or tokens)",
    422: "malformed request: the message says what to fix", 429: "rate limit or server busy: see Retry-After",
    503: "a store the call needs (Redis, for quotas) is unreachable: see Retry-After",
}.items()}
