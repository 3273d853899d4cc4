#!/usr/bin/env bash
# Property-based tests of the identity service's REST surface with Schemathesis, driven by the
# OpenAPI document that the service itself serves at BASE_URL/openapi.json.
#
#   tests/schemathesis/run.sh http://127.0.0.1:8080
#
# Needs nothing but the service at BASE_URL (and PyPI on first use: requirements.txt is installed
# into a virtualenv under $IDENTITY_TEST_CACHE, else $XDG_CACHE_HOME/identity-tests, else
# ~/.cache/identity-tests). The run writes to the service's database: members named
# st-<random>@example.com and schemathesis-generated ones, plus alice@example.com (the examples').
# Exits non-zero on any failure (or when the served document is invalid); prints Schemathesis'
# summary; with SCHEMATHESIS_REPORT_DIR set, it also leaves a JUnit report there.
#
# Budget: at most $SCHEMATHESIS_MAX_EXAMPLES (default 30) generated cases per operation and phase
# (about 800 requests in all), a fixed seed ($SCHEMATHESIS_SEED) so that CI runs are reproducible,
# and the whole run cut at $SCHEMATHESIS_TIMEOUT seconds (default 300; expect well under a minute,
# most of it password hashing). One worker by default ($SCHEMATHESIS_WORKERS): with two, CPython
# 3.11's ast module once raised "AST constructor recursion depth mismatch" inside Hypothesis (a
# thread-safety bug of the interpreter, not of the service), and the service is the bottleneck anyway.
# Phases: examples (the document's examples: the success paths), coverage (boundary and missing
# values of every parameter, and unsupported methods and content types, where only 5xx counts),
# fuzzing (random positive and negative data) and stateful (sequences along the document's links:
# sign-up -> get member, log-in -> refresh -> refresh).
#
# Checks, and why:
#   not_a_server_error          no 5xx, whatever the input: the legacy's crashes (500) become 400s.
#   status_code_conformance     every status is one the contract documents for that operation.
#   response_schema_conformance every body matches its documented schema: private/public member,
#                               session, errors with the contract's exact messages (enums),
#                               timestamps with 3 fractional digits and Z, JWKS without private keys,
#                               and "" for the empty text/html 400/404 bodies (hooks.py reads them).
#   response_headers_conformance  documented headers: Retry-After (integer seconds) on 429.
#   ignored_auth                the bearer-secured operations answer 401 without a token and with a
#                               wrong one (DELETE /sessions declares its bearer optional: always 204).
#   ensure_resource_availability  after a 201 sign-up, the new member is at GET /users/{id} (links).
#   legacy_content_type (hooks.py)  bodies under /api/v1 carry exactly
#                               `application/json; charset=utf-8`; empty bodies are not labelled
#                               JSON; 204 has no body. Replaces the built-in content_type_conformance,
#                               which cannot accept the contract's empty 400/404 bodies when the
#                               service sends them without a Content-Type.
#   success_reached (hooks.py)  each operation answered 2xx at least once: the run really exercised
#                               the success paths (authentication and example data worked).
# Left out on purpose:
#   negative_data_rejection     the legacy contract accepts "invalid" data by design: unpermitted
#                               fields are ignored, numbers are read as strings, arrays/objects where
#                               a string is expected are ignored, a body of another type reads as no
#                               parameters (then 422 or 400, but also 2xx), so schema-invalid input
#                               is legitimately accepted.
#   positive_data_acceptance    schema-valid data is legitimately refused: uniqueness (email, phone:
#                               422 "has already been taken"), wrong credentials (401), throttling
#                               (429), unknown ids (404).
#   unsupported_method          Rails answers an unrouted method with 404 (empty body), not 405;
#                               Schemathesis still sends such requests and only requires no 5xx.
#   content_type_conformance    replaced by legacy_content_type (see above).
#   use_after_free, object_level_authorization, missing_required_header, allow_header_conformance:
#                               nothing in the document for them to act on (no DELETE of a path
#                               resource, one identity per run, no required headers, no Allow).
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 BASE_URL [extra schemathesis run options]" >&2
  exit 2
fi
base_url="${1%/}"
shift

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../venv.sh
source "$here/../venv.sh"
venv_for schemathesis "$here/requirements.txt"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
report=()
if [ -n "${SCHEMATHESIS_REPORT_DIR:-}" ]; then
  mkdir -p "$SCHEMATHESIS_REPORT_DIR"
  report=(--report junit --report-dir "$(cd "$SCHEMATHESIS_REPORT_DIR" && pwd)")
fi

# The served document must be a valid OpenAPI 3.0 document (Schemathesis is lenient about some errors).
echo "== validating $base_url/openapi.json"
if ! curl -fsS --max-time 10 --retry 10 --retry-delay 1 --retry-connrefused \
  -o "$work/openapi.json" "$base_url/openapi.json"; then
  echo "run.sh: cannot fetch $base_url/openapi.json" >&2
  exit 1
fi
"$venv/bin/openapi-spec-validator" "$work/openapi.json"
if [ -f "$here/../../services/identity/rest/openapi.json" ] &&
  ! "$venv/bin/python" -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
    "$work/openapi.json" "$here/../../services/identity/rest/openapi.json"; then
  echo "run.sh: warning: the served document differs from services/identity/rest/openapi.json" >&2
fi

checks=not_a_server_error,status_code_conformance,response_schema_conformance,response_headers_conformance
checks+=,ignored_auth,ensure_resource_availability,legacy_content_type,success_reached

echo "== schemathesis against $base_url"
export IDENTITY_BASE_URL="$base_url"
export SCHEMATHESIS_HOOKS="$here/hooks.py"
cd "$work"
status=0
timeout --kill-after=10 "${SCHEMATHESIS_TIMEOUT:-300}" \
  "$venv/bin/schemathesis" run "$base_url/openapi.json" \
  --url "$base_url" \
  --checks "$checks" \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
  --seed "${SCHEMATHESIS_SEED:-20261126}" \
  --workers "${SCHEMATHESIS_WORKERS:-1}" \
  --request-timeout 30 \
  --generation-database none \
  --no-color \
  "${report[@]}" \
  "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "run.sh: schemathesis did not finish within ${SCHEMATHESIS_TIMEOUT:-300} s" >&2
fi
echo "== schemathesis exit status: $status"
exit "$status"
