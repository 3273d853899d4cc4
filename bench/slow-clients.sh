#!/usr/bin/env bash
# Slow clients against the migration proxy and against nginx, in one run: N connections
# (400) each announce a 1 MiB upload and send all of it but the last byte, then wait.
# For each peer, side by side:
#   - its resident memory before, and at its peak while the uploads are held (VmRSS,
#     sampled every 0.2 s; nginx: master and workers added up);
#   - whether an ordinary request is answered meanwhile, and how long it takes;
#   - when every held connection has been answered or closed (nginx closes after
#     client_body_timeout, 60 s by default; ours answers 408 after
#     limits.body_read_timeout, 30 s by default), and what the clients got.
# Both run with their defaults (ours: the proxy config's limits left out; nginx: only
# client_max_body_size raised to 2m so that a 1 MiB body is accepted at all) in front of
# the same upstream (one that reads each whole body before answering), 2 workers each.
# A benchmark reports; it does not assert. Goal lines say MET or NOT MET.
# Usage: bench/slow-clients.sh [connections, default 400]  (about 3 min, plus the build)
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-400}"
case "$conns" in '' | *[!0-9]*) echo "usage: bench/slow-clients.sh [connections]" >&2; exit 64 ;; esac
work=$(mktemp -d /tmp/slow-clients.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v nginx >/dev/null; then
  echo "== installing nginx (Debian package)"
  apt-get update -qq && apt-get install -y -qq nginx >/dev/null
fi
echo "== building migration-proxy (the production profile the image ships)"
cargo build --profile production --locked -p migration-proxy 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
cp "${CARGO_TARGET_DIR:-target}/production/migration-proxy" "$work/migration-proxy"
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url pid
  for _ in $(seq 1 150); do
    curl -s -m 2 -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: no answer at $1" >&2; exit 1
}

# --- the upstream: reads each request's whole body before it answers, as Puma does
# before a Rails action runs (an upstream that answers before the body is in would end
# the uploads early and hide the proxy's own bound) ---------------------------------
up_port=$(free_port)
cat >"$work/upstream.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 4096
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
python3 "$work/upstream.py" "$up_port" & pids+=($!)
wait_http "http://127.0.0.1:$up_port/" "${pids[-1]}"

# --- nginx as the proxy under test: its defaults, 2 workers ------------------------------
ng_port=$(free_port)
mkdir -p "$work/ng"
cat >"$work/ng/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $work/ng/nginx.pid;
error_log $work/ng/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/ng/tmp;
  proxy_temp_path $work/ng/ptmp;
  client_max_body_size 2m;
  upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen 127.0.0.1:$ng_port backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF

# --- ours: the real manifest, every rule at 1%, both sides the same upstream ------------
our_port=$(free_port); our_admin=$(free_port)
cat >"$work/proxy.yaml" <<EOF
listen: 127.0.0.1:$our_port
admin_listen: 127.0.0.1:$our_admin
virtual_service: member-api
upstreams:
  legacy-api.members.svc.cluster.local: {address: "127.0.0.1:$up_port", role: legacy}
  identity.members.svc.cluster.local: {address: "127.0.0.1:$up_port", role: new}
EOF

cat >"$work/attack.py" <<'EOF'
"""N uploads held one byte short; samples the peer's memory; an ordinary request in
the middle; waits until every connection is answered or closed."""
import json, os, selectors, socket, sys, time, urllib.request

port, n, pids = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]
size = 1 << 20

def rss_mib():
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024

before = rss_mib()
socks = []
head = (f"POST /api/v1/users HTTP/1.1\r\nHost: member-api\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n").encode()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    s.setblocking(False)
    socks.append([s, 0])
body = b"x" * (size - 1)
peak = before
t0 = time.time()
pending = True
while pending and time.time() - t0 < 60:
    pending = False
    for entry in socks:
        s, sent = entry
        if sent < len(body):
            pending = True
            try:
                entry[1] += s.send(body[sent:sent + 65536])
            except BlockingIOError:
                pass
            except OSError:
                entry[1] = len(body)
    peak = max(peak, rss_mib())
held_at = time.time()
# An ordinary request while every upload is held.
t = time.time()
try:
    status = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/users/1", timeout=10).status
except Exception as e:  # an HTTP error status is an answer too
    status = getattr(e, "code", None) or type(e).__name__
ordinary_ms = (time.time() - t) * 1000
sel = selectors.DefaultSelector()
for s, _ in socks:
    sel.register(s, selectors.EVENT_READ)
open_left, answers, last = len(socks), {}, None
while open_left and time.time() - held_at < 150:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if data:
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            if line.startswith("HTTP/"):
                answers[line] = answers.get(line, 0) + 1
            continue
        sel.unregister(s)
        s.close()
        open_left -= 1
        last = time.time() - held_at
    peak = max(peak, rss_mib())
print(json.dumps({
    "before_mib": round(before, 1), "peak_mib": round(peak, 1),
    "ordinary": status, "ordinary_ms": round(ordinary_ms, 1),
    "still_open": open_left, "all_closed_after_s": None if open_left else round(last, 1),
    "answers": answers or {"(closed without an answer)": n - open_left},
}))
EOF

run_peer() { # name port pids...
  local name=$1 port=$2; shift 2
  local list; list=$(IFS=,; echo "$*")
  python3 "$work/attack.py" "$port" "$conns" "$list" >"$work/$name.json"
}

echo "== nginx: $conns uploads of 1 MiB held one byte short"
nginx -p "$work/ng" -c "$work/ng/nginx.conf" -e "$work/ng/error.log" & ng_pid=$!; pids+=($ng_pid)
wait_http "http://127.0.0.1:$ng_port/" "$ng_pid"
run_peer nginx "$ng_port" "$ng_pid" $(pgrep -P "$ng_pid" | tr '\n' ' ')
kill "$ng_pid"; wait "$ng_pid" 2>/dev/null || true

echo "== migration-proxy: the same"
"$work/migration-proxy" --virtual-service istio/virtualservice-member-api.yaml --config "$work/proxy.yaml" --workers 2 >"$work/proxy.log" 2>&1 & our_pid=$!; pids+=($our_pid)
wait_http "http://127.0.0.1:$our_admin/healthz" "$our_pid"
run_peer migration-proxy "$our_port" "$our_pid"

python3 - "$work/nginx.json" "$work/migration-proxy.json" "$conns" <<'EOF'
import json, sys
rows = [("nginx", json.load(open(sys.argv[1]))), ("migration-proxy", json.load(open(sys.argv[2])))]
n = sys.argv[3]
print(f"\n{n} connections, each 1 MiB announced, 1 MiB - 1 byte sent (same run, same upstream):\n")
print(f"{'peer':<16} {'RSS before':>10} {'RSS peak':>9} {'ordinary req':>13} {'all closed':>11}  answers")
for name, r in rows:
    closed = f"{r['all_closed_after_s']} s" if r["all_closed_after_s"] is not None else f"{r['still_open']} open"
    print(f"{name:<16} {r['before_mib']:>8} MiB {r['peak_mib']:>5} MiB {str(r['ordinary']) + ' in ' + str(r['ordinary_ms']) + ' ms':>13} {closed:>11}  {r['answers']}")
ours = rows[1][1]
print()
print("goal: proxy under 96 MiB RSS while held:", "MET" if ours["peak_mib"] < 96 else "NOT MET", f"({ours['peak_mib']} MiB)")
print("goal: an ordinary request answered meanwhile:", "MET" if ours["ordinary"] in (200, 404) else "NOT MET", f"({ours['ordinary']})")
closed = ours["all_closed_after_s"]
print("goal: every held connection closed within 75 s:", "MET" if closed is not None and closed <= 75 else "NOT MET", f"({closed} s)")
EOF
