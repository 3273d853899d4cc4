#!/usr/bin/env bash
# Print raw `curl -si` captures (status line, all headers, body) of one example
# of each endpoint and each error kind, as Markdown, for CAPTURE.md.
#
#   tests/legacy-rails/capture.sh http://127.0.0.1:PORT > /tmp/capture.md
#
# Creates a few members in the oracle's database.
set -uo pipefail
B="${1:?usage: $0 http://127.0.0.1:PORT}/api/v1"; J='Content-Type: application/json'
cap() { # title, curl args (base-relative path inserted by caller)
  local title=$1; shift
  echo "### $title"; echo; echo '```'; { printf '$ curl -si'; for a in "$@"; do if [[ "$a" =~ ^[A-Za-z0-9_./:=?,@%+-]+$ ]]; then printf ' %s' "$a"; else printf " '%s'" "${a//\'/\'\\\'\'}"; fi; done; echo; } | sed "s#$B#http://127.0.0.1:PORT/api/v1#"; curl -si "$@" | tr -d '\r'; echo; echo '```'; echo
}
E="cap$RANDOM@example.com"
cap "201 sign-up (POST /users, JSON)" -X POST $B/users -H "$J" -d "{\"user\":{\"email\":\"$E\",\"password\":\"password1\",\"nickname\":\"당근\",\"phone_number\":\"+8210$(date +%N | cut -c1-8)\"}}"
cap "201 sign-up with no Accept header (no Vary)" -X POST $B/users -H 'Accept:' -H "$J" -d "{\"user\":{\"email\":\"x$E\",\"password\":\"password1\",\"nickname\":\"<b>&\"}}"
cap "422 validation errors" -X POST $B/users -H "$J" -d '{"user":{"email":"bad","password":"short","nickname":"b","phone_number":"","profile_image_url":"http://x"}}'
cap "400 missing wrapper" -X POST $B/users -H "$J" -d '{}'
cap "400 malformed JSON" -X POST $B/users -H "$J" -d '{"user":'
cap "404 no route (id not digits)" $B/users/abc
cap "404 unknown member" $B/users/999999999
cap "401 unauthorized" $B/users/me
cap "500 crash (wrapper is a string)" -X POST $B/users -H "$J" -d '{"user":"abc"}'
cap "201 log-in (POST /sessions, form body)" -X POST $B/sessions -H 'Content-Type: application/x-www-form-urlencoded' --data-urlencode "email=$E" --data-urlencode password=password1
S=$(curl -s -X POST $B/sessions -H "$J" -d "{\"email\":\"$E\",\"password\":\"password1\"}"); T=$(echo "$S" | ruby -rjson -e 'print JSON.parse(STDIN.read)["token"]'); R=$(echo "$S" | ruby -rjson -e 'print JSON.parse(STDIN.read)["refresh_token"]')
cap "401 bad log-in" -X POST $B/sessions -H "$J" -d "{\"email\":\"$E\",\"password\":\"wrong\"}"
cap "200 GET /users/me" $B/users/me -H "Authorization: Bearer $T"
cap "200 PATCH /users/me (unwrapped JSON)" -X PATCH $B/users/me -H "Authorization: Bearer $T" -H "$J" -d '{"nickname":"bobby"}'
ID=$(curl -s $B/users/me -H "Authorization: Bearer $T" | ruby -rjson -e 'print JSON.parse(STDIN.read)["id"]')
cap "200 GET /users/:id" $B/users/$ID
cap "200 GET /users?ids=" "$B/users?ids=$ID,999999999,abc"
cap "400 GET /users without ids" $B/users
cap "201 refresh" -X POST $B/sessions/refresh -H "$J" -d "{\"refresh_token\":\"$R\"}"
cap "401 refresh with a used token" -X POST $B/sessions/refresh -H "$J" -d "{\"refresh_token\":\"$R\"}"
T=$(curl -s -X POST $B/sessions -H "$J" -d "{\"email\":\"$E\",\"password\":\"password1\"}" | ruby -rjson -e 'print JSON.parse(STDIN.read)["token"]')
cap "422 password change, wrong current password" -X PUT $B/users/me/password -H "Authorization: Bearer $T" -H "$J" -d '{"current_password":"nope","password":"newpassword"}'
cap "204 password change" -X PUT $B/users/me/password -H "Authorization: Bearer $T" -H "$J" -d '{"current_password":"password1","password":"newpassword"}'
cap "204 log-out (DELETE /sessions, no token)" -X DELETE $B/sessions
cap "204 withdrawal (DELETE /users/me)" -X DELETE $B/users/me -H "Authorization: Bearer $T"
cap "HEAD on a GET route" -I $B/users/$((ID-1))
cap "404 no route, Accept: application/json" $B/users/abc -H 'Accept: application/json'
cap "400 malformed JSON, Accept: application/json" -X POST $B/users -H "$J" -H 'Accept: application/json' -d '{"user":'
cap "500 crash, Accept: application/json" -X POST $B/users -H "$J" -H 'Accept: application/json' -d '{"user":"abc"}'
cap "406 invalid Accept header" $B/users/1 -H 'Accept: garbage'
cap "Incoming X-Request-Id is echoed (sanitised)" $B/users/999999999 -H 'X-Request-Id: abc 123/def'
ET=$(curl -sI $B/users/$((ID-1)) | tr -d '\r' | sed -n 's/^ETag: //p')
cap "304 conditional GET (If-None-Match with the ETag)" $B/users/$((ID-1)) -H "If-None-Match: $ET"
cap "HTTP/1.0 request" --http1.0 $B/users/999999999
