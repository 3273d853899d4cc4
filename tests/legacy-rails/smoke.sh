#!/usr/bin/env bash
# Exercise a running legacy Rails oracle against the contract with curl.
#
#   tests/legacy-rails/smoke.sh http://127.0.0.1:PORT
#
# Every check sends one request and compares the status and the body, with
# timestamps shown as <time>, tokens as <token> and ids as <id:NAME> (the
# ids this run created). Safe to run repeatedly against the same database:
# each run uses its own email addresses and phone numbers.
set -uo pipefail

base="${1:?usage: $0 http://127.0.0.1:PORT}/api/v1"
run="$(date +%s%N | tail -c 9)"          # 8 digits, unique per run
J='Content-Type: application/json'
F='Content-Type: application/x-www-form-urlencoded'
pass=0 fail=0
declare -A ids=()

# call METHOD PATH [curl args...]: sets $status and $body (normalised) and $raw.
call() {
  local method=$1 path=$2; shift 2
  local out
  out="$(curl -s -g -X "$method" -w '\n%{http_code}' "$base$path" "$@")"
  status="${out##*$'\n'}"
  raw="${out%$'\n'*}"
  normalise
}

normalise() {
  body="$(printf '%s' "$raw" | sed -E \
    -e 's/"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"/"<time>"/g' \
    -e 's/"(token|refresh_token)":"[1-9A-HJ-NP-Za-km-z]{24}"/"\1":"<token>"/g')"
  for name in "${!ids[@]}"; do
    body="${body//\"id\":${ids[$name]},/\"id\":<id:$name>,}"
  done
}

# check DESCRIPTION EXPECTED_STATUS EXPECTED_BODY METHOD PATH [curl args...]
check() {
  local what=$1 want_status=$2 want_body=$3; shift 3
  call "$@"
  check_last "$what" "$want_status" "$want_body"
}

# check_last DESCRIPTION EXPECTED_STATUS EXPECTED_BODY: checks the last call.
check_last() {
  local what=$1 want_status=$2 want_body=$3
  normalise
  if [ "$status" = "$want_status" ] && [ "$body" = "$want_body" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL %s\n  want %s %s\n  got  %s %s\n' "$what" "$want_status" "$want_body" "$status" "$body"
  fi
}

json_field() { ruby -rjson -e 'v = JSON.parse(STDIN.read); ARGV.each { |k| v = v[k] }; print v' "$@"; }

me_json() { # id email nickname phone url
  printf '{"id":<id:%s>,"email":"%s","nickname":"%s","phone_number":%s,"profile_image_url":%s,"created_at":"<time>","updated_at":"<time>"}' "$@"
}
pub_json() { # id nickname url
  printf '{"id":<id:%s>,"nickname":"%s","profile_image_url":%s,"created_at":"<time>"}' "$@"
}
missing() { printf '{"error":"param is missing or the value is empty: %s"}' "$1"; }

bob="bob$run@example.com"; bob_phone="+8210$run"
amy="amy$run@example.com"; kim="kim$run@example.com"

# --- sign-up -----------------------------------------------------------------
call POST /users -H "$J" -d "{\"user\":{\"email\":\"  Bob$run@Example.COM \",\"password\":\"password1\",\"nickname\":\"bob\",\"phone_number\":\"$bob_phone\"}}"
ids[bob]="$(printf '%s' "$raw" | json_field id)"
check_last "sign-up 201 (email stripped+downcased)" 201 "$(me_json bob "$bob" bob "\"$bob_phone\"" null)"
check "all blank" 422 '{"errors":{"email":["can'"'"'t be blank"],"password":["can'"'"'t be blank"],"nickname":["can'"'"'t be blank"],"phone_number":["is invalid"],"profile_image_url":["must be an https URL"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"   ","password":"","nickname":"   ","phone_number":"","profile_image_url":""}}'
check "every rule at once" 422 '{"errors":{"email":["has already been taken"],"password":["is too short (minimum is 8 characters)"],"nickname":["is too short (minimum is 2 characters)"],"phone_number":["has already been taken"],"profile_image_url":["must be an https URL"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"$bob\",\"password\":\"short\",\"nickname\":\"b\",\"phone_number\":\"$bob_phone\",\"profile_image_url\":\"http://x\"}}"
long_local="$(printf 'a%.0s' {1..250})"
check "email invalid + too long" 422 '{"errors":{"email":["is invalid","is too long (maximum is 255 characters)"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"$long_local@@b.cde\",\"password\":\"password1\",\"nickname\":\"ab\"}}"
check "email taken case-insensitively" 422 '{"errors":{"email":["has already been taken"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"BOB$run@EXAMPLE.COM\",\"password\":\"password1\",\"nickname\":\"ab\"}}"
check "non-ASCII email invalid" 422 '{"errors":{"email":["is invalid"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"한@b.c","password":"password1","nickname":"ab"}}'
check "password 3 spaces too short" 422 '{"errors":{"password":["is too short (minimum is 8 characters)"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"p'$run'@x.y","password":"   ","nickname":"ab"}}'
check "password 73 chars" 422 '{"errors":{"password":["is too long (maximum is 72 characters)"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"p$run@x.y\",\"password\":\"$(printf '가%.0s' {1..73})\",\"nickname\":\"ab\"}}"
check "password null" 422 '{"errors":{"password":["can'"'"'t be blank"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"p'$run'@x.y","password":null,"nickname":"ab"}}'
check "nickname of spaces blank" 422 '{"errors":{"nickname":["can'"'"'t be blank"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":"    "}}'
check "nickname 21 Hangul" 422 '{"errors":{"nickname":["is too long (maximum is 20 characters)"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"n$run@x.y\",\"password\":\"password1\",\"nickname\":\"$(printf '가%.0s' {1..21})\"}}"
check "nickname 5 (number)" 422 '{"errors":{"nickname":["is too short (minimum is 2 characters)"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":5}}'
check "nickname true is \"t\"" 422 '{"errors":{"nickname":["is too short (minimum is 2 characters)"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":true}}'
check "nickname array ignored" 422 '{"errors":{"nickname":["can'"'"'t be blank"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":["ab"]}}'
check "phone leading space" 422 '{"errors":{"phone_number":["is invalid"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":"ab","phone_number":" +821012345678"}}'
check "phone +0..." 422 '{"errors":{"phone_number":["is invalid"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":"ab","phone_number":"+0123456789"}}'
check "phone 16 digits" 422 '{"errors":{"phone_number":["is invalid"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":"ab","phone_number":"+1234567890123456"}}'
check "url HTTPS:// uppercase" 422 '{"errors":{"profile_image_url":["must be an https URL"]}}' \
  POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":"password1","nickname":"ab","profile_image_url":"HTTPS://x"}}'
check "url not https and too long" 422 '{"errors":{"profile_image_url":["must be an https URL","is too long (maximum is 2048 characters)"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"n$run@x.y\",\"password\":\"password1\",\"nickname\":\"ab\",\"profile_image_url\":\"http://$(printf 'a%.0s' {1..2045})\"}}"
check "unwrapped JSON is wrapped (password is not)" 422 '{"errors":{"password":["can'"'"'t be blank"],"nickname":["can'"'"'t be blank"]}}' \
  POST /users -H "$J" -d '{"email":"x@y.z"}'
check "missing user {}" 400 "$(missing user)" POST /users -H "$J" -d '{}'
check "empty user {\"user\":{}}" 400 "$(missing user)" POST /users -H "$J" -d '{"user":{}}'
check "form body without user[...]" 400 "$(missing user)" POST /users -H "$F" -d 'email=x@y.z&password=password1&nickname=xy'
check "text/plain body reads as nothing" 400 "$(missing user)" POST /users -H 'Content-Type: text/plain' -d '{"user":{"email":"x@y.z"}}'
check "malformed JSON" 400 '' POST /users -H "$J" -d '{"user":'
check "wrapper is a string: crash" 500 '' POST /users -H "$J" -d '{"user":"abc"}'
check "password is a number: crash" 500 '' POST /users -H "$J" -d '{"user":{"email":"n'$run'@x.y","password":12345678,"nickname":"ab"}}'

call POST /users -H "$J" -d "{\"user\":{\"email\":\"$kim\",\"password\":\"$(printf '가%.0s' {1..30})\",\"nickname\":\"당근\"}}"
ids[kim]="$(printf '%s' "$raw" | json_field id)"
check_last "sign-up Unicode nickname, 30-Hangul password" 201 "$(me_json kim "$kim" 당근 null null)"
check "public view of a Unicode nickname" 200 "$(pub_json kim 당근 null)" GET "/users/${ids[kim]}"
call POST /users -H "$F" --data-urlencode "user[email]=$amy" --data-urlencode 'user[password]=        ' --data-urlencode 'user[nickname]= a '
ids[amy]="$(printf '%s' "$raw" | json_field id)"
check_last "form sign-up" 201 "$(me_json amy "$amy" ' a ' null null)"
check "public view: form sign-up, nickname kept with spaces, 8-space password" 200 "$(pub_json amy ' a ' null)" GET "/users/${ids[amy]}"

# --- sessions ----------------------------------------------------------------
check "log-in wrong password" 401 '{"error":"Invalid email or password"}' POST /sessions -H "$J" -d "{\"email\":\"$bob\",\"password\":\"wrong\"}"
check "log-in unknown email" 401 '{"error":"Invalid email or password"}' POST /sessions -H "$J" -d '{"email":"nobody@example.com","password":"password1"}'
check "log-in 8 spaces (form)" 201 "{\"token\":\"<token>\",\"refresh_token\":\"<token>\",\"expires_at\":\"<time>\",\"user\":$(me_json amy "$amy" ' a ' null null)}" \
  POST /sessions -H "$F" --data-urlencode "email=$amy" --data-urlencode 'password=        '
check "log-in 72-byte prefix of a longer password" 201 "{\"token\":\"<token>\",\"refresh_token\":\"<token>\",\"expires_at\":\"<time>\",\"user\":$(me_json kim "$kim" 당근 null null)}" \
  POST /sessions -H "$J" -d "{\"email\":\"$kim\",\"password\":\"$(printf '가%.0s' {1..24})zzz\"}"
check "log-in (case-insensitive email)" 201 "{\"token\":\"<token>\",\"refresh_token\":\"<token>\",\"expires_at\":\"<time>\",\"user\":$(me_json bob "$bob" bob "\"$bob_phone\"" null)}" \
  POST /sessions -H "$J" -d "{\"email\":\"BOB$run@example.com\",\"password\":\"password1\"}"
token="$(printf '%s' "$raw" | json_field token)"; refresh="$(printf '%s' "$raw" | json_field refresh_token)"
A=(-H "Authorization: Bearer $token")

check "me" 200 "$(me_json bob "$bob" bob "\"$bob_phone\"" null)" GET /users/me "${A[@]}"
check "me without token" 401 '{"error":"Unauthorized"}' GET /users/me
check "me with unknown token" 401 '{"error":"Unauthorized"}' GET /users/me -H 'Authorization: Bearer nope'

check "refresh" 201 "{\"token\":\"<token>\",\"refresh_token\":\"<token>\",\"expires_at\":\"<time>\",\"user\":$(me_json bob "$bob" bob "\"$bob_phone\"" null)}" \
  POST /sessions/refresh -H "$J" -d "{\"refresh_token\":\"$refresh\"}"
new_token="$(printf '%s' "$raw" | json_field token)"
check "used refresh token" 401 '{"error":"Invalid refresh token"}' POST /sessions/refresh -H "$J" -d "{\"refresh_token\":\"$refresh\"}"
check "rotated access token" 401 '{"error":"Unauthorized"}' GET /users/me "${A[@]}"
check "refresh without token" 401 '{"error":"Invalid refresh token"}' POST /sessions/refresh -H "$J" -d '{}'
token="$new_token"; A=(-H "Authorization: Bearer $token")

# --- profile -----------------------------------------------------------------
check "PATCH unwrapped nickname" 200 "$(me_json bob "$bob" bobby "\"$bob_phone\"" null)" PATCH /users/me "${A[@]}" -H "$J" -d '{"nickname":"bobby"}'
check "PATCH ignores email/password" 200 "$(me_json bob "$bob" bobby "\"$bob_phone\"" null)" PATCH /users/me "${A[@]}" -H "$J" -d '{"user":{"email":"new@x.y","password":"x"}}'
check "PATCH form" 200 "$(me_json bob "$bob" bob "null" '"https://img.example.com/a.png"')" PATCH /users/me "${A[@]}" -H "$F" \
  --data-urlencode 'user[nickname]=bob' --data-urlencode 'user[profile_image_url]=https://img.example.com/a.png' -d 'user[phone_number]'
check "PATCH invalid" 422 '{"errors":{"nickname":["can'"'"'t be blank"],"phone_number":["is invalid"]}}' PATCH /users/me "${A[@]}" -H "$J" -d '{"user":{"nickname":"","phone_number":""}}'
check "PATCH {}" 400 "$(missing user)" PATCH /users/me "${A[@]}" -H "$J" -d '{}'
check "PATCH no token" 401 '{"error":"Unauthorized"}' PATCH /users/me -H "$J" -d '{"nickname":"zz"}'
check "public view" 200 "$(pub_json bob bob '"https://img.example.com/a.png"')" GET "/users/${ids[bob]}"
check "ids list ordered, unknown left out" 200 "{\"users\":[$(pub_json bob bob '"https://img.example.com/a.png"'),$(pub_json kim 당근 null),$(pub_json amy ' a ' null)]}" \
  GET "/users?ids=${ids[amy]},999999999,${ids[kim]},${ids[bob]},abc"
check "ids missing" 400 "$(missing ids)" GET /users
check "ids empty" 400 "$(missing ids)" GET '/users?ids='
check "ids beyond the first 100 ignored" 200 '{"users":[]}' GET "/users?ids=$(seq -s, 900000001 900000100),${ids[bob]}"
check "unknown member" 404 '{"error":"Not Found"}' GET /users/999999999
check "non-numeric id: no route" 404 '' GET /users/abc
check "unknown path" 404 '' GET /nope
check "PUT /users/me: no route" 404 '' PUT /users/me "${A[@]}"

# --- password change ---------------------------------------------------------
other="$(curl -s -X POST "$base/sessions" -H "$J" -d "{\"email\":\"$bob\",\"password\":\"password1\"}" | json_field token)"
check "password change wrong current" 422 '{"errors":{"current_password":["is invalid"]}}' PUT /users/me/password "${A[@]}" -H "$J" -d '{"current_password":"nope","password":"newpassword"}'
check "password change too short" 422 '{"errors":{"password":["is too short (minimum is 8 characters)"]}}' PUT /users/me/password "${A[@]}" -H "$J" -d '{"current_password":"password1","password":"short"}'
check "password change missing password" 422 '{"errors":{"password":["can'"'"'t be blank"]}}' PUT /users/me/password "${A[@]}" -H "$J" -d '{"current_password":"password1"}'
check "password change no token" 401 '{"error":"Unauthorized"}' PUT /users/me/password -H "$J" -d '{"current_password":"password1","password":"newpassword"}'
check "password change" 204 '' PUT /users/me/password "${A[@]}" -H "$J" -d '{"current_password":"password1","password":"newpassword"}'
check "this session survives" 200 "$(me_json bob "$bob" bob "null" '"https://img.example.com/a.png"')" GET /users/me "${A[@]}"
check "other session ended" 401 '{"error":"Unauthorized"}' GET /users/me -H "Authorization: Bearer $other"
check "old password refused" 401 '{"error":"Invalid email or password"}' POST /sessions -H "$J" -d "{\"email\":\"$bob\",\"password\":\"password1\"}"

# --- log-out -----------------------------------------------------------------
t2="$(curl -s -X POST "$base/sessions" -H "$J" -d "{\"email\":\"$bob\",\"password\":\"newpassword\"}" | json_field token)"
check "log-out" 204 '' DELETE /sessions -H "Authorization: Bearer $t2"
check "logged-out token" 401 '{"error":"Unauthorized"}' GET /users/me -H "Authorization: Bearer $t2"
check "log-out without token" 204 '' DELETE /sessions
check "log-out with junk token" 204 '' DELETE /sessions -H 'Authorization: Bearer junk'

# --- withdrawal --------------------------------------------------------------
check "withdraw without token" 401 '{"error":"Unauthorized"}' DELETE /users/me
check "withdraw" 204 '' DELETE /users/me "${A[@]}"
check "withdrawn token" 401 '{"error":"Unauthorized"}' GET /users/me "${A[@]}"
check "withdrawn member hidden" 404 '{"error":"Not Found"}' GET "/users/${ids[bob]}"
check "withdrawn member left out of ids" 200 "{\"users\":[$(pub_json kim 당근 null)]}" GET "/users?ids=${ids[bob]},${ids[kim]}"
check "withdrawn member cannot log in" 401 '{"error":"Invalid email or password"}' POST /sessions -H "$J" -d "{\"email\":\"$bob\",\"password\":\"newpassword\"}"
check "scrubbed address is taken" 422 '{"errors":{"email":["has already been taken"]}}' \
  POST /users -H "$J" -d "{\"user\":{\"email\":\"deleted-${ids[bob]}@invalid\",\"password\":\"password1\",\"nickname\":\"ab\"}}"
call POST /users -H "$J" -d "{\"user\":{\"email\":\"$bob\",\"password\":\"password1\",\"nickname\":\"bob\",\"phone_number\":\"$bob_phone\"}}"
ids[new]="$(printf '%s' "$raw" | json_field id)"
check_last "email and phone free again after withdrawal" 201 "$(me_json new "$bob" bob "\"$bob_phone\"" null)"

echo "smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
