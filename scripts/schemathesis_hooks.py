"""Schemathesis checks NodeAI adds to its own (loaded through SCHEMATHESIS_HOOKS by scripts/test
and scripts/fuzz): every 4xx and 5xx answer is the error envelope of README's "Errors"."""

import json

import schemathesis


@schemathesis.check
def error_envelope(ctx, response, case):
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except Exception as exc:  # noqa: BLE001 - any unreadable body is the finding
        raise AssertionError(f"{response.status_code} is not JSON: {response.text[:200]!r}") from exc
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        raise AssertionError(f"{response.status_code} has no error object: {response.text[:200]!r}")
    for field, kind in (("code", str), ("message", str), ("details", list), ("suggestions", list), ("request_id", str), ("timestamp", str)):
        if not isinstance(error.get(field), kind):
            raise AssertionError(f"{response.status_code} error.{field} is not a {kind.__name__}: {response.text[:200]!r}")
    if not error["code"] or error["code"] != error["code"].upper():
        raise AssertionError(f"error.code {error['code']!r} is not an UPPER_SNAKE code")
    return None


@schemathesis.hook
def filter_body(ctx, body):
    """Skips request bodies that are not UTF-8. Locally, cargo-lambda's stand-in for API Gateway
    answers such a body with its own 500 before any NodeAI code runs (it builds the Lambda event
    with a text body); NodeAI itself answers any body it receives that is not JSON with 400
    INVALID_JSON (tests/tests/api_errors.rs)."""
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    # A JSON body with a lone surrogate in a string goes on the wire as bytes that are not
    # UTF-8 either: the same stand-in 500.
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return False
    return True
