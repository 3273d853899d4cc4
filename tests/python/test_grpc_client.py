"""The identity service's gRPC API, used from Python: proof that another language can call it.

Stubs are generated from the repository's `proto/` at test time (grpc_tools.protoc), so this test
always speaks the contract as it is in the tree, not a copy.

Environment:
  IDENTITY_GRPC_ADDR  host:port of the gRPC listener (required)
  IDENTITY_HTTP_URL   http://host:port of the HTTP listener, for /.well-known/jwks.json (required)
  IDENTITY_PROTO_DIR  the proto root (default: <repo>/proto)
  IDENTITY_JWT_ISSUER / IDENTITY_JWT_AUDIENCE  expected `iss` / `aud` (default urn:identity / member-api)

Every test creates its own members (unique emails and phone numbers per run), so the tests are
independent of each other and of data already in the service's database. The throttling test runs
last: it provokes RESOURCE_EXHAUSTED on purpose.
"""

from __future__ import annotations

import base64
import importlib
import importlib.resources
import json
import os
import secrets
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import grpc
import jwt
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = Path(os.environ.get("IDENTITY_PROTO_DIR", REPO_ROOT / "proto")).resolve()
ISSUER = os.environ.get("IDENTITY_JWT_ISSUER", "urn:identity")
AUDIENCE = os.environ.get("IDENTITY_JWT_AUDIENCE", "member-api")
SERVICE_NAME = "identity.v1.IdentityService"
PASSWORD = "correct horse battery staple"
RPC_TIMEOUT = 20.0  # seconds; password hashing makes some calls slow in debug builds
ACCESS_TTL = 3600
REFRESH_TTL = 30 * 24 * 3600
UNKNOWN_ID = 9_000_000_000_000_000_000  # no sequence gets there

# ---------------------------------------------------------------------------------------------
# Fixtures: stubs, channel, members
# ---------------------------------------------------------------------------------------------


def _require_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"environment variable {name} is not set (see tests/python/run.sh)", pytrace=False)
    return value


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """identity.v1 messages and stubs, generated from proto/ into a temporary directory."""
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    assert protos, f"no .proto files under {PROTO_DIR}"
    out = tmp_path_factory.mktemp("identity_stubs")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(str(p) for p in protos),
    ]
    rc = protoc.main(args)
    assert rc == 0, f"protoc failed ({rc}): {' '.join(args)}"
    sys.path.insert(0, str(out))
    try:
        messages = importlib.import_module("identity.v1.identity_pb2")
        services = importlib.import_module("identity.v1.identity_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return SimpleNamespace(m=messages, s=services)


@pytest.fixture(scope="session")
def channel():
    addr = _require_env("IDENTITY_GRPC_ADDR")
    ch = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(ch).result(timeout=30)
    except grpc.FutureTimeoutError:
        pytest.fail(f"no gRPC server reachable at {addr} within 30 s", pytrace=False)
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stub(pb, channel):
    return pb.s.IdentityServiceStub(channel)


@pytest.fixture(scope="session")
def http_url():
    return _require_env("IDENTITY_HTTP_URL").rstrip("/")


def unique_email(tag: str = "py") -> str:
    return f"{tag}-{secrets.token_hex(8)}@example.com"


def unique_phone() -> str:
    # E.164: + then 8 to 15 digits, the first not 0. 12 digits here, random enough per run.
    return "+8210" + "".join(str(secrets.randbelow(10)) for _ in range(8))


def bearer(session) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {session.access_token}"),)


class Members:
    """Creates members and sessions through the API under test."""

    def __init__(self, pb, stub):
        self.pb = pb
        self.stub = stub

    def sign_up(self, **fields):
        fields.setdefault("email", unique_email())
        fields.setdefault("password", PASSWORD)
        fields.setdefault("nickname", "pytester")
        resp = self.stub.SignUp(self.pb.m.SignUpRequest(**fields), timeout=RPC_TIMEOUT)
        return resp.member

    def log_in(self, email: str, password: str = PASSWORD):
        resp = self.stub.Authenticate(
            self.pb.m.AuthenticateRequest(email=email, password=password), timeout=RPC_TIMEOUT
        )
        return resp.session

    def new(self, **fields):
        """A new member and a session of it."""
        member = self.sign_up(**fields)
        return member, self.log_in(member.email, fields.get("password", PASSWORD))

    def verify(self, access_token: str):
        return self.stub.VerifyAccessToken(
            self.pb.m.VerifyAccessTokenRequest(access_token=access_token), timeout=RPC_TIMEOUT
        )


@pytest.fixture
def members(pb, stub):
    return Members(pb, stub)


# ---------------------------------------------------------------------------------------------
# Helpers: errors and times
# ---------------------------------------------------------------------------------------------


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    """The grpc.RpcError a call raises (fails the test if it succeeds)."""
    kwargs.setdefault("timeout", RPC_TIMEOUT)
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def details_of(err: grpc.RpcError):
    """google.rpc.Status from the grpc-status-details-bin trailer (code and message must match the call's)."""
    status = rpc_status.from_call(err)
    assert status is not None, f"{err.code()} without grpc-status-details-bin: {err.details()!r}"
    assert status.code == err.code().value[0]
    return status


def unpack_details(status, message_type):
    found = []
    for detail in status.details:
        if detail.Is(message_type.DESCRIPTOR):
            msg = message_type()
            detail.Unpack(msg)
            found.append(msg)
    return found


def violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    """The BadRequest field violations of an error, sorted, as (field, description)."""
    bad_requests = unpack_details(details_of(err), error_details_pb2.BadRequest)
    assert len(bad_requests) == 1, f"expected one google.rpc.BadRequest detail, got {len(bad_requests)}"
    return sorted((v.field, v.description) for v in bad_requests[0].field_violations)


def assert_invalid(err: grpc.RpcError, expected: list[tuple[str, str]]):
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert violations(err) == sorted(expected)


def ts_seconds(ts) -> float:
    return ts.seconds + ts.nanos / 1e9


def assert_recent(ts, *, around: float | None = None, slack: float = 120.0):
    now = time.time() if around is None else around
    value = ts_seconds(ts)
    assert abs(value - now) <= slack, f"timestamp {value} is not within {slack}s of {now}"


def fetch_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200, f"GET {url}: {resp.status}"
        ctype = resp.headers.get("Content-Type", "")
        assert ctype.split(";")[0].strip() == "application/json", f"GET {url}: Content-Type {ctype!r}"
        return json.loads(resp.read())


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------------------------------------
# Infrastructure: health and reflection
# ---------------------------------------------------------------------------------------------


def test_health_check_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, f"service {service!r}: {resp.status}"
    err = rpc_error(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def _reflection_call(channel, version: str, request):
    method = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return next(iter(method(iter([request]), timeout=RPC_TIMEOUT)))


def test_server_reflection_describes_the_service(channel, pb):
    # grpc.reflection.v1 and v1alpha have the same messages on the wire; try v1 first.
    list_request = reflection_pb2.ServerReflectionRequest(list_services="*")
    version = None
    for candidate in ("v1", "v1alpha"):
        try:
            listed = _reflection_call(channel, candidate, list_request)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                continue
            raise
        version = candidate
        break
    assert version is not None, "neither grpc.reflection.v1 nor v1alpha is served"
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names, names

    resp = _reflection_call(
        channel, version, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in resp.file_descriptor_response.file_descriptor_proto
    ]
    served = {
        method.name
        for f in files
        if f.package == "identity.v1"
        for svc in f.service
        if svc.name == "IdentityService"
        for method in svc.method
    }
    expected = {m.name for m in pb.m.DESCRIPTOR.services_by_name["IdentityService"].methods}
    assert served == expected


# ---------------------------------------------------------------------------------------------
# Sign-up, authentication, tokens
# ---------------------------------------------------------------------------------------------


def test_sign_up_normalises_email_and_returns_the_member(members):
    raw_email = "  " + unique_email("Py-Mixed").replace("example.com", "Example.COM") + " "
    phone = unique_phone()
    before = time.time()
    member = members.sign_up(
        email=raw_email,
        nickname=" 당근 ",  # kept as given, spaces included; 4 characters
        phone_number=phone,
        profile_image_url="https://cdn.example.com/p.png",
    )
    assert member.id > 0
    assert member.email == raw_email.strip().lower()
    assert member.nickname == " 당근 "
    assert member.HasField("phone_number") and member.phone_number == phone
    assert member.HasField("profile_image_url") and member.profile_image_url == "https://cdn.example.com/p.png"
    assert_recent(member.create_time, around=before)
    assert member.update_time == member.create_time

    bare = members.sign_up(nickname="bare")
    assert bare.id > member.id
    assert not bare.HasField("phone_number")
    assert not bare.HasField("profile_image_url")


def test_authenticate_issues_a_session(members):
    member = members.sign_up()
    before = time.time()
    session = members.log_in(member.email.upper())  # email matched case-insensitively
    assert session.access_token and session.refresh_token and session.session_id
    assert session.access_token != session.refresh_token
    assert session.member == member
    assert_recent(session.access_token_expire_time, around=before + ACCESS_TTL)
    assert_recent(session.refresh_token_expire_time, around=before + REFRESH_TTL, slack=3600)

    other = members.log_in(member.email)
    assert other.session_id != session.session_id
    assert other.access_token != session.access_token
    assert other.refresh_token != session.refresh_token


def test_authenticate_refuses_wrong_credentials(members, stub, pb):
    member = members.sign_up()
    for email, password in (
        (member.email, PASSWORD + "!"),  # wrong password
        (member.email, PASSWORD[:-1]),
        (unique_email("nobody"), PASSWORD),  # unknown email
    ):
        err = rpc_error(stub.Authenticate, pb.m.AuthenticateRequest(email=email, password=password))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (email, err.code(), err.details())


def test_verify_access_token(members):
    member, session = members.new()
    resp = members.verify(session.access_token)
    assert resp.active is True
    assert resp.member_id == member.id
    assert resp.session_id == session.session_id
    assert abs(ts_seconds(resp.expire_time) - ts_seconds(session.access_token_expire_time)) < 1.0

    for bogus in ("", "not-a-token", session.access_token[:-4] + "AAAA", session.refresh_token):
        resp = members.verify(bogus)
        assert resp.active is False, bogus
        assert resp.member_id == 0 and resp.session_id == "" and not resp.HasField("expire_time")


def test_access_token_is_a_jwt_verifiable_with_the_jwks(members, http_url):
    member, session = members.new()
    jwks = fetch_json(f"{http_url}/.well-known/jwks.json")
    keys = jwks["keys"]
    assert keys, "JWKS has no keys"
    for key in keys:
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519", key
        assert key["alg"] == "EdDSA" and key["use"] == "sig", key
        assert key["kid"], key
        assert len(b64url_decode(key["x"])) == 32, key
        assert "d" not in key, "the JWKS publishes a private key"
    assert len({k["kid"] for k in keys}) == len(keys), "kids are not unique"

    header = jwt.get_unverified_header(session.access_token)
    assert header["alg"] == "EdDSA"
    matching = [k for k in keys if k["kid"] == header.get("kid")]
    assert len(matching) == 1, f"token kid {header.get('kid')!r} not in JWKS {[k['kid'] for k in keys]}"
    key = jwt.PyJWK(matching[0])

    claims = jwt.decode(
        session.access_token,
        key=key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["iss", "aud", "sub", "sid", "iat", "exp", "jti"]},
    )
    assert claims["sub"] == str(member.id)
    assert claims["sid"] == session.session_id
    assert claims["exp"] - claims["iat"] == ACCESS_TTL
    assert abs(claims["iat"] - time.time()) < 120
    assert abs(claims["exp"] - ts_seconds(session.access_token_expire_time)) <= 1
    assert isinstance(claims["jti"], str) and claims["jti"]

    other = members.log_in(member.email)
    assert jwt.decode(other.access_token, key=key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)[
        "jti"
    ] != claims["jti"]

    # The signature really covers the token: a changed payload or another audience is refused.
    head, payload, signature = session.access_token.split(".")
    forged_claims = dict(claims, sub=str(member.id + 1))
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{forged_payload}.{signature}", key=key, algorithms=["EdDSA"], audience=AUDIENCE)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(session.access_token, key=key, algorithms=["EdDSA"], audience="another-api", issuer=ISSUER)
    assert members.verify(f"{head}.{forged_payload}.{signature}").active is False


def test_grpc_session_is_a_rest_session(members, http_url):
    """One service, one store: a session made over gRPC is a bearer for the legacy REST paths."""
    member, session = members.new(nickname="both")
    request = urllib.request.Request(
        f"{http_url}/api/v1/users/me", headers={"Authorization": f"Bearer {session.access_token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers.get("Content-Type", "").replace(" ", "").lower() == "application/json;charset=utf-8"
        body = json.loads(resp.read())
    assert body["id"] == member.id
    assert body["email"] == member.email
    assert body["nickname"] == "both"
    assert body["phone_number"] is None and body["profile_image_url"] is None


# ---------------------------------------------------------------------------------------------
# Reading members
# ---------------------------------------------------------------------------------------------


def test_get_member(members, stub, pb):
    member = members.sign_up(nickname="getme", profile_image_url="https://cdn.example.com/g.png")
    public = stub.GetMember(pb.m.GetMemberRequest(id=member.id), timeout=RPC_TIMEOUT).member
    assert public.id == member.id
    assert public.nickname == "getme"
    assert public.profile_image_url == "https://cdn.example.com/g.png"
    assert public.create_time == member.create_time

    plain = members.sign_up()
    assert not stub.GetMember(pb.m.GetMemberRequest(id=plain.id), timeout=RPC_TIMEOUT).member.HasField(
        "profile_image_url"
    )

    err = rpc_error(stub.GetMember, pb.m.GetMemberRequest(id=UNKNOWN_ID))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.code()
    for impossible in (0, -1):  # no such id can exist; the contract does not say which of the two
        err = rpc_error(stub.GetMember, pb.m.GetMemberRequest(id=impossible))
        assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (impossible, err.code())


def test_batch_get_members_reports_missing_ids(members, stub, pb):
    first = members.sign_up(nickname="first")
    second = members.sign_up(nickname="second")
    unknown = [UNKNOWN_ID, UNKNOWN_ID + 1]
    resp = stub.BatchGetMembers(
        pb.m.BatchGetMembersRequest(ids=[second.id, unknown[0], first.id, unknown[1], second.id]),
        timeout=RPC_TIMEOUT,
    )
    assert [m.id for m in resp.members] == [first.id, second.id]  # ordered by id, each once
    assert [m.nickname for m in resp.members] == ["first", "second"]
    assert resp.members[0].create_time == first.create_time
    assert sorted(set(resp.missing_ids)) == unknown
    assert first.id not in resp.missing_ids and second.id not in resp.missing_ids


def test_lookup_member_by_email_and_phone(members, stub, pb):
    phone = unique_phone()
    member = members.sign_up(nickname="lookup", phone_number=phone)
    by_email = stub.LookupMember(pb.m.LookupMemberRequest(email=member.email.upper()), timeout=RPC_TIMEOUT)
    assert by_email.member.id == member.id
    assert by_email.member.nickname == "lookup"
    by_phone = stub.LookupMember(pb.m.LookupMemberRequest(phone_number=phone), timeout=RPC_TIMEOUT)
    assert by_phone.member.id == member.id

    for request in (
        pb.m.LookupMemberRequest(email=unique_email("nobody")),
        pb.m.LookupMemberRequest(phone_number=unique_phone()),
    ):
        err = rpc_error(stub.LookupMember, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND, (request, err.code())


# ---------------------------------------------------------------------------------------------
# Validation errors
# ---------------------------------------------------------------------------------------------


def test_invalid_sign_up_reports_field_violations(stub, pb):
    err = rpc_error(
        stub.SignUp,
        pb.m.SignUpRequest(
            email="not-an-email",
            password="short",
            nickname="",
            phone_number="12345",
            profile_image_url="http://insecure.example.com/p.png",
        ),
    )
    assert_invalid(
        err,
        [
            ("email", "is invalid"),
            ("password", "is too short (minimum is 8 characters)"),
            ("nickname", "can't be blank"),
            ("phone_number", "is invalid"),
            ("profile_image_url", "must be an https URL"),
        ],
    )

    err = rpc_error(stub.SignUp, pb.m.SignUpRequest(email="   ", password="", nickname="x" * 21))
    assert_invalid(
        err,
        [
            ("email", "can't be blank"),
            ("password", "can't be blank"),
            ("nickname", "is too long (maximum is 20 characters)"),
        ],
    )


def test_taken_email_or_phone_is_already_exists(members, stub, pb):
    phone = unique_phone()
    member = members.sign_up(phone_number=phone)

    err = rpc_error(
        stub.SignUp, pb.m.SignUpRequest(email=member.email.upper(), password=PASSWORD, nickname="again")
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS, (err.code(), err.details())
    assert violations(err) == [("email", "has already been taken")]

    err = rpc_error(
        stub.SignUp,
        pb.m.SignUpRequest(email=unique_email(), password=PASSWORD, nickname="again", phone_number=phone),
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS, (err.code(), err.details())
    assert violations(err) == [("phone_number", "has already been taken")]


# ---------------------------------------------------------------------------------------------
# Acting for a member
# ---------------------------------------------------------------------------------------------


def test_update_profile_with_bearer_metadata(members, stub, pb):
    member, session = members.new(nickname="before", phone_number=unique_phone())
    time.sleep(0.01)
    new_phone = unique_phone()
    updated = stub.UpdateProfile(
        pb.m.UpdateProfileRequest(
            nickname="after", phone_number=new_phone, profile_image_url="https://cdn.example.com/a.png"
        ),
        metadata=bearer(session),
        timeout=RPC_TIMEOUT,
    ).member
    assert updated.id == member.id and updated.email == member.email
    assert updated.nickname == "after"
    assert updated.phone_number == new_phone
    assert updated.profile_image_url == "https://cdn.example.com/a.png"
    assert updated.create_time == member.create_time
    assert ts_seconds(updated.update_time) > ts_seconds(member.update_time)

    public = stub.GetMember(pb.m.GetMemberRequest(id=member.id), timeout=RPC_TIMEOUT).member
    assert public.nickname == "after" and public.profile_image_url == "https://cdn.example.com/a.png"

    # Absent fields stay; clear_* removes the optional ones.
    cleared = stub.UpdateProfile(
        pb.m.UpdateProfileRequest(clear_phone_number=True, clear_profile_image_url=True),
        metadata=bearer(session),
        timeout=RPC_TIMEOUT,
    ).member
    assert cleared.nickname == "after"
    assert not cleared.HasField("phone_number") and not cleared.HasField("profile_image_url")

    # The legacy rules apply: an empty string is invalid, not absent.
    err = rpc_error(
        stub.UpdateProfile,
        pb.m.UpdateProfileRequest(nickname="x", phone_number="", profile_image_url="ftp://x"),
        metadata=bearer(session),
    )
    assert_invalid(
        err,
        [
            ("nickname", "is too short (minimum is 2 characters)"),
            ("phone_number", "is invalid"),
            ("profile_image_url", "must be an https URL"),
        ],
    )
    unchanged = stub.GetMember(pb.m.GetMemberRequest(id=member.id), timeout=RPC_TIMEOUT).member
    assert unchanged.nickname == "after"


def test_refresh_session_rotates_and_refuses_the_old_token(members, stub, pb):
    member, session = members.new()
    rotated = stub.RefreshSession(
        pb.m.RefreshSessionRequest(refresh_token=session.refresh_token), timeout=RPC_TIMEOUT
    ).session
    assert rotated.access_token and rotated.refresh_token
    assert rotated.access_token != session.access_token
    assert rotated.refresh_token != session.refresh_token
    assert rotated.member.id == member.id

    now_active = members.verify(rotated.access_token)
    assert now_active.active and now_active.member_id == member.id
    assert now_active.session_id == rotated.session_id
    # The old pair stops working.
    assert members.verify(session.access_token).active is False
    err = rpc_error(stub.RefreshSession, pb.m.RefreshSessionRequest(refresh_token=session.refresh_token))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    # Within the grace period, a reused token is refused and nothing else happens.
    assert members.verify(rotated.access_token).active is True

    again = stub.RefreshSession(
        pb.m.RefreshSessionRequest(refresh_token=rotated.refresh_token), timeout=RPC_TIMEOUT
    ).session
    assert members.verify(again.access_token).active is True

    err = rpc_error(stub.RefreshSession, pb.m.RefreshSessionRequest(refresh_token="no-such-refresh-token"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_revoke_session(members, stub, pb):
    member, by_access = members.new()
    by_refresh = members.log_in(member.email)
    survivor = members.log_in(member.email)

    stub.RevokeSession(pb.m.RevokeSessionRequest(access_token=by_access.access_token), timeout=RPC_TIMEOUT)
    assert members.verify(by_access.access_token).active is False
    err = rpc_error(stub.RefreshSession, pb.m.RefreshSessionRequest(refresh_token=by_access.refresh_token))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    stub.RevokeSession(pb.m.RevokeSessionRequest(refresh_token=by_refresh.refresh_token), timeout=RPC_TIMEOUT)
    assert members.verify(by_refresh.access_token).active is False

    # Idempotent, and other sessions of the member are untouched.
    stub.RevokeSession(pb.m.RevokeSessionRequest(access_token=by_access.access_token), timeout=RPC_TIMEOUT)
    stub.RevokeSession(pb.m.RevokeSessionRequest(refresh_token=by_refresh.refresh_token), timeout=RPC_TIMEOUT)
    assert members.verify(survivor.access_token).active is True

    err = rpc_error(
        stub.UpdateProfile, pb.m.UpdateProfileRequest(nickname="revoked"), metadata=bearer(by_access)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_change_password_ends_other_sessions(members, stub, pb):
    member, current = members.new()
    other = members.log_in(member.email)
    new_password = "a brand new passphrase"

    err = rpc_error(
        stub.ChangePassword,
        pb.m.ChangePasswordRequest(current_password="wrong password", new_password=new_password),
        metadata=bearer(current),
    )
    assert_invalid(err, [("current_password", "is invalid")])
    err = rpc_error(
        stub.ChangePassword,
        pb.m.ChangePasswordRequest(current_password=PASSWORD, new_password="short"),
        metadata=bearer(current),
    )
    assert_invalid(err, [("password", "is too short (minimum is 8 characters)")])
    assert members.verify(other.access_token).active is True  # failed attempts change nothing

    stub.ChangePassword(
        pb.m.ChangePasswordRequest(current_password=PASSWORD, new_password=new_password),
        metadata=bearer(current),
        timeout=RPC_TIMEOUT,
    )
    assert members.verify(current.access_token).active is True
    assert members.verify(other.access_token).active is False
    err = rpc_error(stub.RefreshSession, pb.m.RefreshSessionRequest(refresh_token=other.refresh_token))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    err = rpc_error(stub.Authenticate, pb.m.AuthenticateRequest(email=member.email, password=PASSWORD))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert members.log_in(member.email, new_password).member.id == member.id


def test_withdraw_member(members, stub, pb):
    phone = unique_phone()
    member, session = members.new(phone_number=phone)
    other = members.log_in(member.email)

    stub.WithdrawMember(pb.m.WithdrawMemberRequest(), metadata=bearer(session), timeout=RPC_TIMEOUT)

    err = rpc_error(stub.GetMember, pb.m.GetMemberRequest(id=member.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND, (err.code(), err.details())
    batch = stub.BatchGetMembers(pb.m.BatchGetMembersRequest(ids=[member.id]), timeout=RPC_TIMEOUT)
    assert list(batch.members) == [] and list(batch.missing_ids) == [member.id]
    for request in (
        pb.m.LookupMemberRequest(email=member.email),
        pb.m.LookupMemberRequest(phone_number=phone),
    ):
        err = rpc_error(stub.LookupMember, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND, (request, err.code())

    assert members.verify(session.access_token).active is False
    assert members.verify(other.access_token).active is False
    err = rpc_error(stub.Authenticate, pb.m.AuthenticateRequest(email=member.email, password=PASSWORD))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = rpc_error(stub.WithdrawMember, pb.m.WithdrawMemberRequest(), metadata=bearer(session))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    # The personal data was scrubbed: the email and phone number are free again, under a new id.
    again = members.sign_up(email=member.email, phone_number=phone)
    assert again.id != member.id


def _changes_until(stream, member_id, kind, seen):
    """Reads the stream until `member_id`'s change of `kind`, checking that numbers follow each other."""
    for change in stream:
        if seen:
            assert change.seq == seen[-1].seq + 1, (seen[-1].seq, change.seq)
        seen.append(change)
        if change.member_id == member_id and change.kind == kind:
            return change
    pytest.fail("the stream ended")


def test_watch_member_changes_as_a_cache_keeper(members, stub, pb):
    """Another service's cache: each change of a member in order, withdrawals without data, resumable."""
    kind = pb.m.MemberChange.Kind
    stream = stub.WatchMemberChanges(pb.m.WatchMemberChangesRequest(), timeout=RPC_TIMEOUT * 3)
    seen = []
    try:
        member, session = members.new(nickname="watched")
        stub.UpdateProfile(
            pb.m.UpdateProfileRequest(nickname="renamed"), metadata=bearer(session), timeout=RPC_TIMEOUT
        )
        updated = _changes_until(stream, member.id, kind.UPDATED, seen)
        assert updated.member.id == member.id and updated.member.nickname == "renamed"
        assert updated.change_time.seconds > 0
        stub.WithdrawMember(pb.m.WithdrawMemberRequest(), metadata=bearer(session), timeout=RPC_TIMEOUT)
        withdrawn = _changes_until(stream, member.id, kind.WITHDRAWN, seen)
        assert not withdrawn.HasField("member")
    finally:
        stream.cancel()
    mine = [c for c in seen if c.member_id == member.id]
    assert [c.kind for c in mine] == [kind.CREATED, kind.UPDATED, kind.WITHDRAWN]

    # A restarted keeper resumes after the last change it acted on: the next one, not a repeat.
    resumed = stub.WatchMemberChanges(
        pb.m.WatchMemberChangesRequest(after_seq=mine[0].seq), timeout=RPC_TIMEOUT
    )
    try:
        assert next(resumed).seq == mine[0].seq + 1
    finally:
        resumed.cancel()

    # A cursor the log never reached is refused, with the reason in google.rpc.ErrorInfo.
    err = rpc_error(
        lambda request, **kw: list(stub.WatchMemberChanges(request, **kw)),
        pb.m.WatchMemberChangesRequest(after_seq=2**62),
    )
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE, (err.code(), err.details())
    infos = unpack_details(details_of(err), error_details_pb2.ErrorInfo)
    assert [i.reason for i in infos] == ["CURSOR_AHEAD"]


def test_acting_rpcs_require_a_valid_bearer(members, stub, pb):
    member, session = members.new()
    calls = (
        (stub.UpdateProfile, pb.m.UpdateProfileRequest(nickname="nope")),
        (stub.ChangePassword, pb.m.ChangePasswordRequest(current_password=PASSWORD, new_password="x" * 12)),
        (stub.WithdrawMember, pb.m.WithdrawMemberRequest()),
    )
    head, payload, _ = session.access_token.split(".")
    bad_metadata = (
        None,
        (("authorization", "Bearer"),),
        (("authorization", "Bearer not-a-token"),),
        (("authorization", f"Basic {session.access_token}"),),
        (("authorization", f"Bearer {head}.{payload}.AAAA"),),  # bad signature
        (("authorization", f"Bearer {session.refresh_token}"),),
    )
    for call, request in calls:
        for metadata in bad_metadata:
            err = rpc_error(call, request, metadata=metadata)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (call, metadata, err.code(), err.details())
    # Nothing happened to the member.
    public = stub.GetMember(pb.m.GetMemberRequest(id=member.id), timeout=RPC_TIMEOUT).member
    assert public.nickname == member.nickname
    assert members.log_in(member.email).member.id == member.id


# ---------------------------------------------------------------------------------------------
# Throttling (last: it provokes RESOURCE_EXHAUSTED on purpose)
# ---------------------------------------------------------------------------------------------


def test_repeated_failed_log_ins_are_throttled(members, stub, pb):
    member = members.sign_up()
    attempts = int(os.environ.get("IDENTITY_THROTTLE_MAX_ATTEMPTS", "100"))
    for attempt in range(1, attempts + 1):
        err = rpc_error(
            stub.Authenticate, pb.m.AuthenticateRequest(email=member.email, password=f"wrong password {attempt}")
        )
        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (attempt, err.code(), err.details())
    else:
        pytest.fail(f"no RESOURCE_EXHAUSTED after {attempts} failed log-ins for one email")
    assert attempt > 1, "the first failed log-in was already throttled"
    retry = unpack_details(details_of(err), error_details_pb2.RetryInfo)
    assert len(retry) == 1, "RESOURCE_EXHAUSTED without google.rpc.RetryInfo"
    delay = retry[0].retry_delay
    assert delay.seconds > 0 or delay.nanos > 0
    assert details_of(err).code == code_pb2.RESOURCE_EXHAUSTED
