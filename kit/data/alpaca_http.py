"""Alpaca's HTTP plumbing shared by the bar source (:class:`kit.data.sources.AlpacaBarSource`) and
the broker (:class:`kit.live.alpaca.AlpacaBroker`): credentials from the environment, per-request
timeouts, one bounded retry loop with exponential backoff, and the errors of external services.

Credentials come from environment variables only (``APCA_API_KEY_ID``, ``APCA_API_SECRET_KEY`` by
default). They are never printed, logged, put in an exception message or kept by a kit object in
readable form (alpaca-py's client holds them); exceptions raised here carry no chained alpaca-py or
requests exception (those hold the request with its key headers).

Retries: HTTP 429, 500, 502, 503, 504, timeouts and connection errors, at most ``max_retries`` times,
sleeping ``backoff * 2**(k-1)`` seconds (capped at ``backoff_max``) before retry ``k``. Why the kit
switches alpaca-py's own retry off and sets its own timeouts: ``docs/decisions/0004-alpaca-retries.md``.

Errors (all subclasses of :class:`BrokerError`): :class:`BrokerConfigError` (keys missing or refused,
live trading asked for), :class:`BrokerUnavailableError` (network down, timeouts or rate limits after
the bounded retries), :class:`DataSourceUnavailableError` (the same for market data).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)



DEFAULT_KEY_ENV = "APCA_API_KEY_ID"



DEFAULT_SECRET_ENV = "APCA_API_SECRET_KEY"



PAPER_URL = "https://paper-api.alpaca.markets"



DATA_URL = "https://data.alpaca.markets"



RETRY_STATUS = frozenset({429, 500, 502, 503, 504})



_sleep = time.sleep  # the retry loop's sleep; tests replace it to record the backoff without waiting



class BrokerError(RuntimeError):
    """Base class of the errors raised by brokers and bar sources."""



class BrokerConfigError(BrokerError):
    """Credentials missing or refused, or a configuration the kit will not run (live trading).

    The message names the environment variables, never their values.
    """



class BrokerUnavailableError(BrokerError):
    """The service could not be reached or kept failing: offline, timeouts, HTTP 429/5xx after the
    bounded retries. The message says what was tried (attempts, timeout, backoff) and the last error.

    Attributes
    ----------
    attempts : int
        Requests made for the failed operation.
    last_error : str
        The last failure, one line (no credentials).
    """

    def __init__(self, message: str, attempts: int = 0, last_error: str = ""):
        super().__init__(message)
        self.attempts, self.last_error = attempts, last_error



class DataSourceUnavailableError(BrokerUnavailableError):
    """Market data could not be fetched (offline, timeouts, rate limits after the retries)."""



class OrderNotFoundError(BrokerError, LookupError):
    """The broker has no order with the given id."""



class _Failure(NamedTuple):
    """A failed request, reduced to plain strings (no exception object, so no request headers)."""

    kind: str  # transient | auth | not_found | refused | bad_response | config
    status: int | None
    message: str



def _import_alpaca() -> None:
    """Import alpaca-py's clients once, silencing the DeprecationWarning its stream modules trigger
    in websockets (``websockets.legacy``); the kit uses no websocket."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="websockets.legacy is deprecated", category=DeprecationWarning)
        import alpaca.data.historical.stock  # noqa: F401
        import alpaca.trading.client  # noqa: F401



def _read_keys(key_env: str, secret_env: str) -> tuple[str, str]:
    missing = [name for name in (key_env, secret_env) if not os.environ.get(name, "").strip()]
    if missing:
        raise BrokerConfigError(
            f"Alpaca credentials missing: environment variable(s) {', '.join(missing)} not set or empty; "
            f"set both {key_env} and {secret_env} to paper-trading keys (Alpaca dashboard, paper account). "
            "Nothing was sent."
        )
    return os.environ[key_env].strip(), os.environ[secret_env].strip()



def _api_message(text: str) -> str:
    """The ``message`` of an Alpaca error body, else the body itself (one line, at most 300 chars)."""
    try:
        body = json.loads(text)
        if isinstance(body, dict) and body.get("message"):
            text = str(body["message"])
    except (ValueError, TypeError):
        pass
    text = " ".join(str(text).split())
    return text[:300] if text else "(empty body)"



def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v



def _timeout_adapter(timeout: float):
    """A ``requests`` HTTPAdapter that applies ``timeout`` (seconds) to every request sent without
    one (alpaca-py sends none) and never retries by itself."""
    from requests.adapters import HTTPAdapter

    class TimeoutHTTPAdapter(HTTPAdapter):
        def send(self, request, timeout=None, **kwargs):
            return super().send(request, timeout=default if timeout is None else timeout, **kwargs)

    default = timeout
    return TimeoutHTTPAdapter(max_retries=0)



class _AlpacaHTTP:
    """Shared machinery of the Alpaca adapters: credentials, client set-up, bounded retries, errors."""

    _service = "Alpaca API"
    _default_url = PAPER_URL
    _unavailable_error: type[BrokerUnavailableError] = BrokerUnavailableError
    _offline_hint = ""

    def __init__(self, base_url, key_env, secret_env, timeout, max_retries, backoff, backoff_max):
        self.key_env, self.secret_env = str(key_env), str(secret_env)
        self.timeout = _check_positive("timeout", timeout)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.backoff = _check_positive("backoff", backoff, allow_zero=True)
        self.backoff_max = _check_positive("backoff_max", backoff_max, allow_zero=True)
        if base_url is not None and not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = str(base_url).rstrip("/") if base_url is not None else None
        self._client = None
        _import_alpaca()

    def _configure(self, client) -> None:
        """Switch alpaca-py's own retry off and give its session a default timeout."""
        for attr in ("_session", "_retry", "_api_key", "_secret_key"):
            if not hasattr(client, attr):
                raise BrokerConfigError(
                    f"alpaca-py's client has no attribute {attr!r}: the kit's Alpaca adapter is written for alpaca-py 0.44.0"
                )
        client._retry = 0
        adapter = _timeout_adapter(self.timeout)
        client._session.mount("http://", adapter)
        client._session.mount("https://", adapter)
        self._client = client

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        return self.base_url or self._default_url

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.url!r}, key_env={self.key_env!r}, secret_env={self.secret_env!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r}, backoff={self.backoff!r})"
        )

    def __getstate__(self):
        raise TypeError(f"{type(self).__name__} holds credentials and cannot be pickled; build a new one from the environment")

    def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            self._client._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ errors
    def _redact(self, text: str) -> str:
        for secret in (getattr(self._client, "_api_key", None), getattr(self._client, "_secret_key", None)):
            if secret and len(secret) >= 8:  # real keys are 20+ characters; shorter strings would garble text
                text = text.replace(secret, "***")
        return text

    def _classify(self, exc: BaseException) -> _Failure | None:
        """Map an exception from alpaca-py / requests to a :class:`_Failure`; None if not ours."""
        import pydantic
        import requests
        from alpaca.common.exceptions import APIError

        if isinstance(exc, APIError):
            status = exc.status_code
            msg = self._redact(_api_message(str(exc)))
            if status in RETRY_STATUS:
                return _Failure("transient", status, f"HTTP {status}: {msg}")
            if status == 401:
                return _Failure("auth", status, msg)
            if status == 404:
                return _Failure("not_found", status, msg)
            return _Failure("refused", status, msg)
        if isinstance(exc, requests.exceptions.Timeout):
            return _Failure("transient", None, f"timed out after {self.timeout:g} s ({type(exc).__name__})")
        transient = (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            requests.exceptions.JSONDecodeError,
        )
        if isinstance(exc, transient):
            detail = self._redact(" ".join(str(exc).split()))[:300]
            return _Failure("transient", None, f"{type(exc).__name__}: {detail}")
        if isinstance(exc, requests.exceptions.RequestException):
            return _Failure("config", None, f"{type(exc).__name__}: {self._redact(str(exc))[:300]}")
        if isinstance(exc, pydantic.ValidationError):
            return _Failure("bad_response", None, f"response did not parse: {self._redact(str(exc))[:300]}")
        return None

    def _attempt(self, fn: Callable[[], Any]) -> tuple[Any, _Failure | None]:
        try:
            return fn(), None
        except Exception as exc:
            failure = self._classify(exc)
            if failure is None:
                raise
        # Returned outside the except block: the alpaca-py/requests exception (which holds the request
        # and its key headers) is not chained to anything raised later.
        return None, failure

    def _delay(self, retry: int) -> float:
        return min(self.backoff * 2.0 ** (retry - 1), self.backoff_max)

    def _retry_wait(self, what: str, failure: _Failure, retry: int) -> None:
        delay = self._delay(retry)
        logger.warning("%s failed (%s); retry %d of %d in %.3g s", what, failure.message, retry, self.max_retries, delay)
        _sleep(delay)

    def _unavailable(self, what: str, attempts: int, failure: _Failure, extra: str = "") -> BrokerUnavailableError:
        return self._unavailable_error(
            f"{self._service} at {self.url} unavailable (offline, down or rate-limiting): {what} failed "
            f"{attempts} time(s) ({self.max_retries} retries, backoff {self.backoff:g} s doubling up to "
            f"{self.backoff_max:g} s, timeout {self.timeout:g} s per request); last error: {failure.message}{extra}"
            f"{self._offline_hint}",
            attempts=attempts,
            last_error=failure.message,
        )

    def _error(self, what: str, failure: _Failure) -> BrokerError:
        status = f"HTTP {failure.status}: " if failure.status is not None else ""
        if failure.kind == "auth" or (failure.kind == "refused" and failure.status == 403):
            return BrokerConfigError(
                f"{self._service} at {self.url} refused the credentials from ${self.key_env} and "
                f"${self.secret_env} on {what} ({status}{failure.message}); check they are paper-trading keys "
                "with access to this endpoint"
            )
        if failure.kind == "not_found":
            return OrderNotFoundError(f"{what}: not found ({status}{failure.message})")
        if failure.kind == "config":
            return BrokerConfigError(f"{what}: bad request set-up for {self.url} ({failure.message})")
        return BrokerError(f"{what}: {self._service} answered {status}{failure.message}")

    def _call(self, what: str, fn: Callable[[], Any], handle: tuple[str, ...] = ()) -> tuple[Any, _Failure | None]:
        """Run ``fn`` (an idempotent request) with bounded retries on transient failures.

        Returns ``(result, None)``, or ``(None, failure)`` for a failure whose kind is in ``handle``;
        raises :class:`BrokerUnavailableError` (or the subclass) when the retries are used up and the
        mapped :class:`BrokerError` for any other failure.
        """
        retries = 0
        while True:
            result, failure = self._attempt(fn)
            if failure is None:
                return result, None
            if failure.kind in handle:
                return None, failure
            if failure.kind != "transient":
                raise self._error(what, failure)
            if retries >= self.max_retries:
                raise self._unavailable(what, retries + 1, failure)
            retries += 1
            self._retry_wait(what, failure, retries)

