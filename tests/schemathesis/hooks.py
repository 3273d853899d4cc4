"""Schemathesis hooks for the identity service's REST surface (loaded through SCHEMATHESIS_HOOKS by run.sh).

1. Authentication. The bearer-secured operations get a real access token, so that fuzzing reaches
   past the 401 into validation and success paths. When the document is loaded (before any request
   of the run) this module signs up a pool of members and logs each in; the run takes sessions from
   the pool as earlier ones die (log-out, withdrawal). Taking the pool up front keeps the run away from
   POST /api/v1/sessions once fuzzing has started, which by then may be throttled (429).
   Schemathesis drops a cached token when a secured operation answers 401 (`retry_on`), and the
   next case then gets the next session.

2. Data the examples phase can succeed with: the document's examples are pointed at members made
   for this run (see before_load_schema), so each success path is reached on every run, whatever
   the database already holds.

3. Checks of the legacy contract that the OpenAPI document cannot express:
   - `legacy_content_type`: a response with a body has exactly the documented media type, and
     under /api/v1 exactly `application/json; charset=utf-8`; an empty body (the empty 400/404 of
     the contract) is never labelled JSON; 204 has no body.
   - `success_reached` (after the run): every operation in SUCCESS_EXPECTED answered 2xx at least
     once, so a run where authentication or data setup silently failed (every case a 401 or 422)
     cannot pass as green.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import deque

import requests
import schemathesis

BASE_URL = os.environ.get("IDENTITY_BASE_URL", "").rstrip("/")
POOL_SIZE = int(os.environ.get("SCHEMATHESIS_AUTH_POOL", "20"))

DEFAULT_PASSWORD = "correct horse battery staple"

JSON_UTF8 = "application/json; charset=utf-8"
SUCCESS_EXPECTED = {
    "POST /api/v1/users",
    "GET /api/v1/users",
    "GET /api/v1/users/{id}",
    "GET /api/v1/users/me",
    "PATCH /api/v1/users/me",
    "DELETE /api/v1/users/me",
    "PUT /api/v1/users/me/password",
    "POST /api/v1/sessions",
    "POST /api/v1/sessions/refresh",
    "DELETE /api/v1/sessions",
    "GET /.well-known/jwks.json",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
}


class SetupError(RuntimeError):
    pass


def _post(path: str, body: dict) -> requests.Response:
    return requests.post(f"{BASE_URL}{path}", json=body, timeout=30)


def _sign_up(email: str, password: str, nickname: str, **extra) -> requests.Response:
    return _post("/api/v1/users", {"user": {"email": email, "password": password, "nickname": nickname, **extra}})


def _log_in(email: str, password: str) -> dict:
    for _ in range(5):
        resp = _post("/api/v1/sessions", {"email": email, "password": password})
        if resp.status_code == 201:
            return resp.json()
        if resp.status_code == 429:
            time.sleep(min(float(resp.headers.get("Retry-After", "1")), 10.0))
            continue
        raise SetupError(f"log-in of {email}: {resp.status_code} {resp.text[:200]}")
    raise SetupError(f"log-in of {email}: still throttled")


def _sign_up_ok(email: str, password: str, nickname: str) -> dict:
    resp = _sign_up(email, password, nickname)
    if resp.status_code != 201:
        raise SetupError(f"sign-up of {email}: {resp.status_code} {resp.text[:200]}")
    return resp.json()


def _new_session(password: str) -> dict:
    email = f"st-{secrets.token_hex(8)}@example.com"
    _sign_up_ok(email, password, "fuzzer")
    return _log_in(email, password)


def _json_media(document: dict, path: str, method: str) -> dict:
    """The application/json media type object of an operation's request body ({} if none)."""
    try:
        media = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    except (KeyError, TypeError):
        return {}
    return media if isinstance(media, dict) else {}


_POOL: deque = deque()
_POOL_LOCK = threading.Lock()
_STATE: dict = {}


@schemathesis.hook
def before_load_schema(context, raw_schema):
    """Creates the run's members, then points the document's examples at them.

    - changePassword's example keeps its `current_password`: the pool members get that password.
    - signUp's example gets a fresh email and phone number (201 on every run, not 422 taken).
    - logIn's example gets the credentials of a member made for it (never throttled by an earlier
      run's failures, never withdrawn: it is not one of the pool's authenticated members).
    - refreshSession's example gets a live refresh token of that member, and getMember's `id` and
      listMembers' `ids` its id, so that the examples phase reaches each success path for sure.
    """
    if not BASE_URL:
        raise SetupError("IDENTITY_BASE_URL is not set (run tests/schemathesis/run.sh)")
    with _POOL_LOCK:
        if not _STATE:
            password = _json_media(raw_schema, "/api/v1/users/me/password", "put").get("example", {}).get(
                "current_password", DEFAULT_PASSWORD
            )
            email = f"st-login-{secrets.token_hex(8)}@example.com"
            member = _sign_up_ok(email, DEFAULT_PASSWORD, "login")
            _STATE.update(
                password=password,
                login={"email": email, "password": DEFAULT_PASSWORD},
                member_id=member["id"],
                refresh_token=_log_in(email, DEFAULT_PASSWORD)["refresh_token"],
            )
            _POOL.extend(_new_session(password) for _ in range(POOL_SIZE))

    sign_up = _json_media(raw_schema, "/api/v1/users", "post")
    user = dict((sign_up.get("example") or {}).get("user") or {"password": DEFAULT_PASSWORD, "nickname": "example"})
    user["email"] = f"st-example-{secrets.token_hex(8)}@example.com"
    if "phone_number" in user:
        user["phone_number"] = "+8210" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    if sign_up:
        sign_up["example"] = {"user": user}
    for path, method, example in (
        ("/api/v1/sessions", "post", dict(_STATE["login"])),
        ("/api/v1/sessions/refresh", "post", {"refresh_token": _STATE["refresh_token"]}),
    ):
        media = _json_media(raw_schema, path, method)
        if media:
            media["example"] = example
    for path, name, value in (
        ("/api/v1/users/{id}", "id", _STATE["member_id"]),
        ("/api/v1/users", "ids", [_STATE["member_id"]]),
    ):
        for operation in (raw_schema.get("paths", {}).get(path) or {}).values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("name") == name:
                    parameter["example"] = value


@schemathesis.auth(refresh_interval=3000).apply_to(path_regex=r"^/api/v1/users/me(/password)?$").apply_to(
    method="DELETE", path="/api/v1/sessions"
)
class PooledBearer:
    """A live session's access token; the next pooled (or a fresh) session once it has died."""

    def get(self, case, ctx):
        with _POOL_LOCK:
            session = _POOL.popleft() if _POOL else None
        if session is None:
            session = _new_session(_STATE["password"])
        return session["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _normalised(value: str) -> str:
    return "; ".join(part.strip().lower() for part in value.split(";"))


@schemathesis.deserializer("text/html")
def _read_html(ctx, response):
    """Lets response_schema_conformance check the contract's empty bodies (`EmptyBody`: "")."""
    return response.content.decode(response.encoding or "utf-8", errors="replace")


@schemathesis.check
def legacy_content_type(ctx, response, case):
    if case.method.upper() != case.operation.method.upper():
        return None  # an unsupported-method probe: only not_a_server_error applies
    values = response.headers.get("content-type") or []
    ctype = values[0] if values else None
    body = response.content or b""
    label = f"{case.method.upper()} {case.path} -> {response.status_code}"
    if response.status_code == 204:
        if body:
            raise AssertionError(f"{label}: a 204 response has a body ({len(body)} bytes)")
        return None
    if not body:
        if ctype is not None and _media_type(ctype) == "application/json":
            raise AssertionError(f"{label}: an empty body is labelled {ctype!r}")
        return None
    if ctype is None:
        raise AssertionError(f"{label}: a body without Content-Type")
    if case.path.startswith("/api/v1/"):
        if _normalised(ctype) != JSON_UTF8:
            raise AssertionError(f"{label}: Content-Type {ctype!r}, the contract says {JSON_UTF8!r}")
        return None
    definition = case.operation.definition.raw.get("responses", {}).get(str(response.status_code), {})
    documented = {_media_type(m) for m in definition.get("content", {})}
    if documented and _media_type(ctype) not in documented:
        raise AssertionError(f"{label}: Content-Type {ctype!r}, documented {sorted(documented)}")
    return None


@schemathesis.check
class success_reached:  # noqa: N801 - the check's name as the CLI shows it
    """Every operation in SUCCESS_EXPECTED answered 2xx at least once during the run."""

    def __init__(self):
        self.tested: set[str] = set()
        self.succeeded: set[str] = set()
        self.lock = threading.Lock()

    def after_response(self, ctx, response, case):
        label = f"{case.method.upper()} {case.path}"
        with self.lock:
            self.tested.add(label)
            if 200 <= response.status_code < 300:
                self.succeeded.add(label)
        return None

    def after_run(self, ctx):
        missing = sorted((SUCCESS_EXPECTED & self.tested) - self.succeeded)
        if missing:
            raise AssertionError("operations that never answered 2xx during the run: " + ", ".join(missing))
