#!/bin/bash
# make bench: the gateway's throughput and latency beside its peers, in one
# run on this machine, printed as one table (see tests/bench/README.md).
#
#   bash tests/bench/bench.sh BUILD_DIR
#
# Starts on loopback, each with its own config and pid file in a work folder:
# a static upstream (nginx `return 200` with an SMC-shaped body), nginx as a
# plain reverse proxy to it, HAProxy 2.6 verifying the RS256 token and
# proxying to it, and the gateway's full path to it (token cache on and off
# when the gateway has that switch). Each gets the same wrk load, in
# interleaved rounds; the table reports medians. Then the gateway in front of
# the SMC simulator answering after 100 ms: 256 connections (ideal 2,560
# req/s), and 1,000 for the peak RSS. Nothing is asserted about speed; the
# script fails only when a server answered wrongly or the audit file does not
# hold exactly the requests served.
set -euo pipefail

build=$(cd "${1:?usage: bench.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECONDS:-10}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
warmup=${BENCH_WARMUP:-2}
lat_ms=${BENCH_UPSTREAM_LATENCY_MS:-100}
lat_conns=${BENCH_LATENCY_CONNECTIONS:-256}
rss_conns=${BENCH_RSS_CONNECTIONS:-1000}
profile=${BENCH_PROFILE:-0}
attribution=${BENCH_ATTRIBUTION:-0}
wait_idle=${BENCH_WAIT_IDLE:-0}
bench_dir=${BENCH_DIR:-$build/bench}
PYTHON=${PYTHON:-/usr/bin/python3}

GATEWAY=$build/smc-gateway
AUDIT_TOOL=$build/smc-gateway-audit
SIM=$build/smc-sim
TOKEN_TOOL=$build/smc-token
ISSUER=https://idp.example.com
AUDIENCE=smc-gateway
SMC_REQUEST_ID=473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E

die() {
    echo "bench: $*" >&2
    exit 1
}

note() {
    echo "bench: $*" >&2
}

# ---------------------------------------------------------------- preflight

for tool in wrk nginx haproxy openssl curl "$PYTHON"; do
    command -v "$tool" >/dev/null || die "$tool is missing (sh tests/deps.sh bench installs it)"
done
for prog in "$GATEWAY" "$SIM" "$TOKEN_TOOL"; do
    [ -x "$prog" ] || die "$prog is missing: run make all first"
done
for n in "$rounds" "$secs" "$conns" "$threads" "$warmup" "$lat_ms" "$lat_conns" "$rss_conns" "$wait_idle" \
    "$attribution"; do
    case "$n" in '' | *[!0-9]*) die "BENCH_* settings must be whole numbers (got '$n')" ;; esac
done
[ "$rounds" -ge 1 ] && [ "$secs" -ge 1 ] || die "BENCH_ROUNDS and BENCH_SECONDS must be at least 1"

# (Whole outputs first: with pipefail, grep -q closing a pipe early fails it.)
haproxy_vv=$(haproxy -vv 2>&1 || true)
haproxy_version=$(printf '%s\n' "$haproxy_vv" | sed -n 's/^HA-\{0,1\}Proxy version \([0-9][0-9.]*\).*/\1/p' | sed -n 1p)
case "$haproxy_version" in
1.* | 2.[0-4] | 2.[0-4].*) die "HAProxy $haproxy_version has no jwt_verify (2.5 or later is needed)" ;;
'') die "cannot read HAProxy's version from haproxy -v" ;;
esac
case "$haproxy_vv" in *+OPENSSL*) ;; *) false ;; esac || die "this HAProxy is built without OpenSSL: no jwt_verify"

# wrk, the proxies and the gateway need a descriptor per connection (the
# gateway two: caller and upstream); children inherit the raised limit.
need_fds=$((2 * rss_conns + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need_fds" ] ||
    die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) is below the $need_fds the $rss_conns-connection round needs"

mkdir -p "$bench_dir"
stamp=$(date +%Y%m%d-%H%M%S)
out=$bench_dir/$stamp
work=$bench_dir/work.$$
mkdir -p "$out/wrk" "$out/configs" "$out/logs"
mkdir -m 0700 "$work"
ln -sfn "$stamp" "$bench_dir/latest"

# The audit file must be on a real disk: on tmpfs a sync costs nothing.
fs_type=$(df --output=fstype "$work" 2>/dev/null | tail -n 1)
fs_source=$(df --output=source "$work" 2>/dev/null | tail -n 1)
[ -n "$fs_type" ] || fs_type=$(stat -f -c %T "$work")
case "$fs_type" in
tmpfs | ramfs) die "$bench_dir is on $fs_type: the audit file must live on a real disk (set BENCH_DIR)" ;;
esac
audit_dir=$(cd "$bench_dir" && pwd)

# Copies of the programs: every round measures the same binary even when
# someone rebuilds build/ meanwhile.
mkdir "$work/bin"
cp "$GATEWAY" "$SIM" "$TOKEN_TOOL" "$work/bin/"
GATEWAY=$work/bin/smc-gateway
SIM=$work/bin/smc-sim
TOKEN_TOOL=$work/bin/smc-token
FAULT_SHIM=$build/fault.so
if [ "$attribution" = 1 ]; then
    [ -f "$FAULT_SHIM" ] || die "BENCH_ATTRIBUTION=1 needs $FAULT_SHIM (make builds it)"
    cp "$FAULT_SHIM" "$work/bin/"
    FAULT_SHIM=$work/bin/fault.so
fi
if [ -x "$AUDIT_TOOL" ]; then
    cp "$AUDIT_TOOL" "$work/bin/"
    AUDIT_TOOL=$work/bin/smc-gateway-audit
fi
gw_sha=$(sha256sum "$GATEWAY" | cut -c1-12)
gw_version=$("$GATEWAY" --version 2>/dev/null || echo "smc-gateway ?")
git_rev=$(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo "no git")
if [ "$git_rev" != "no git" ] && [ -n "$(cd "$here" && git status --porcelain -- :/gateway 2>/dev/null)" ]; then
    git_rev="$git_rev + uncommitted gateway/ changes"
fi

# --------------------------------------------------------- process control

pids=()
gw_pid=""
sampler_pid=""
wrk_pid=""

# running PID: exists and is not a zombie (our children stay zombies, and
# answer kill -0, until waited for).
running() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st%% *}" != Z ]
}

stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        running "$pid" || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    stop_pid "$wrk_pid"
    stop_pid "$sampler_pid"
    stop_pid "$gw_pid"
    for pid in "${pids[@]}"; do
        stop_pid "$pid"
    done
    rm -rf "$work"
    [ "$rc" -eq 0 ] || echo "bench: stopped (exit $rc); partial results in $out" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID NAME LOG: until PORT accepts connections, or PID exits.
wait_port() {
    local port=$1 pid=$2 name=$3 log=$4 i
    for i in $(seq 1 100); do
        if ! running "$pid"; then
            cat "$log" >&2 2>/dev/null || true
            die "$name exited during start-up (log above, $log)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not open port $port within 10 s (log: $log)"
}

# fill TEMPLATE OUTPUT NAME=VALUE...: replace @NAME@ placeholders.
fill() {
    local tmpl=$1 dst=$2 sedargs=() kv
    shift 2
    for kv in "$@"; do
        sedargs+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${sedargs[@]}" "$tmpl" >"$dst"
    ! grep -q '@[A-Z_]*@' "$dst" || die "unfilled placeholder in $dst"
}

# ------------------------------------------------------ keys, token, files

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt.key" 2>/dev/null
openssl pkey -in "$work/jwt.key" -pubout -out "$work/jwt.pub.pem" 2>/dev/null
token=$("$TOKEN_TOOL" --alg RS256 --key "$work/jwt.key" --sub alice@example.com --team migration \
    --iss "$ISSUER" --aud "$AUDIENCE" --ttl 3600)
# Same header and claims, one signature character changed (not the last,
# whose low bits may be padding): must be refused.
tampered=$("$PYTHON" -c '
import sys
t = sys.argv[1]
i = len(t) - 10
print(t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1:])' "$token")
# Tokens each verifier must refuse for its claims: another audience, another
# issuer, expired beyond the gateway's 60 s leeway.
mint() {
    "$TOKEN_TOOL" --alg RS256 --key "$work/jwt.key" --sub alice@example.com --team migration "$@"
}
bad_aud=$(mint --iss "$ISSUER" --aud other-service --ttl 3600)
bad_iss=$(mint --iss https://evil.example.com --aud "$AUDIENCE" --ttl 3600)
expired=$(mint --iss "$ISSUER" --aud "$AUDIENCE" --ttl -120)
export BENCH_TOKEN=$token

cat >"$work/credentials.json" <<EOF
{"prod": {"access_key_id": "LTAI5tBenchKey000001", "access_key_secret": "bench-AccessKey-Secret-000000000001"}}
EOF
chmod 0600 "$work/credentials.json"
cat >"$work/policy.json" <<'EOF'
{"teams": {"migration": {"credential": "prod", "allow": ["DeleteReplicationJob"]}}}
EOF

# -------------------------------------------------------------- peers

if [ "$(id -u)" -eq 0 ]; then
    nginx_user="user nobody nogroup;"
else
    nginx_user=""
fi

# start_nginx NAME TEMPLATE PORT: an nginx of our own, in the foreground.
start_nginx() {
    local name=$1 tmpl=$2 port=$3 prefix=$work/$1 pid
    mkdir -p "$prefix"
    fill "$here/$tmpl" "$prefix/nginx.conf" USER="$nginx_user" PREFIX="$prefix" PORT="$port" \
        STATIC_PORT="${static_port:-0}"
    cp "$prefix/nginx.conf" "$out/configs/$name.conf"
    nginx -t -q -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' 2>"$out/logs/$name.log" ||
        { cat "$out/logs/$name.log" >&2; die "nginx rejected $prefix/nginx.conf"; }
    nginx -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' >>"$out/logs/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    last_pid=$pid
    wait_port "$port" "$pid" "nginx ($name)" "$prefix/error.log"
}

static_port=$(free_port)
start_nginx static nginx-static.conf.in "$static_port"
nginx_port=$(free_port)
start_nginx proxy nginx-proxy.conf.in "$nginx_port"
nginx_pid=$last_pid

haproxy_port=$(free_port)
fill "$here/haproxy.cfg.in" "$work/haproxy.cfg" PORT="$haproxy_port" STATIC_PORT="$static_port" \
    PUBKEY="$work/jwt.pub.pem" ISSUER="$ISSUER" AUDIENCE="$AUDIENCE"
cp "$work/haproxy.cfg" "$out/configs/haproxy.cfg"
haproxy -c -q -f "$work/haproxy.cfg" >"$out/logs/haproxy.log" 2>&1 ||
    { cat "$out/logs/haproxy.log" >&2; die "haproxy rejected $work/haproxy.cfg"; }
haproxy -f "$work/haproxy.cfg" -db >>"$out/logs/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
wait_port "$haproxy_port" "$haproxy_pid" haproxy "$out/logs/haproxy.log"

# ------------------------------------------------------ gateway config

gw_port=$(free_port)

# gw_config FILE ENDPOINT AUDIT_FILE EXTRA_JSON: the gateway's config, with
# EXTRA_JSON merged in (objects key by key).
gw_config() {
    "$PYTHON" - "$@" "$gw_port" "$work" "$ISSUER" "$AUDIENCE" <<'PY'
import json, sys
path, endpoint, audit, extra, port, work, issuer, audience = sys.argv[1:9]
cfg = {
    "listen": "127.0.0.1:%s" % port,
    "instance": "gw-bench",
    "auth": {"algorithms": ["RS256"], "key_file": work + "/jwt.pub.pem", "issuer": issuer,
             "audience": audience, "team_claim": "team"},
    "policy_file": work + "/policy.json",
    "credentials_file": work + "/credentials.json",
    "upstream": {"endpoint": endpoint},
    "audit": {"file": audit},
}
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
merge(cfg, json.loads(extra))
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
PY
}

merge_json() {
    "$PYTHON" -c '
import json, sys
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
a = json.loads(sys.argv[1]); merge(a, json.loads(sys.argv[2])); print(json.dumps(a))' "$1" "$2"
}

static_url=http://127.0.0.1:$static_port/
accepts() { # accepts EXTRA_JSON: does --check-config take the base plus this?
    gw_config "$work/probe.json" "$static_url" "$work/probe-audit.jsonl" "$1"
    "$GATEWAY" --check-config -c "$work/probe.json" >/dev/null 2>&1
}

accepts '{}' || {
    "$GATEWAY" --check-config -c "$work/probe.json" >&2 || true
    die "the gateway rejects the bench's base config (above)"
}

# Keys newer gateways know; each goes in only when --check-config takes it.
gw_extra='{}'
features=()
probe() { # probe LABEL JSON...: first accepted candidate wins
    local label=$1 cand
    shift
    for cand in "$@"; do
        if accepts "$(merge_json "$gw_extra" "$cand")"; then
            gw_extra=$(merge_json "$gw_extra" "$cand")
            features+=("$label=$("$PYTHON" -c 'import json,sys; d=json.loads(sys.argv[1]);
while isinstance(d, dict): d = next(iter(d.values()))
print(json.dumps(d))' "$cand")")
            return 0
        fi
    done
    features+=("$label=n/a")
    return 1
}
if [ "$(id -u)" -eq 0 ]; then
    probe allow_root '{"allow_root": true}' || true
fi
probe limits.max_connections '{"limits": {"max_connections": 4096}}' '{"limits": {"max_connections": 2048}}' || true
probe limits.max_upstream_concurrency '{"limits": {"max_upstream_concurrency": 2048}}' \
    '{"limits": {"max_upstream_concurrency": 1024}}' || true
probe limits.max_upstream_queue '{"limits": {"max_upstream_queue": 4096}}' || true
# The default, spelled out: the table counts the slow syncs each round's log reports.
probe audit.slow_sync_warn_ms '{"audit": {"slow_sync_warn_ms": 100}}' || true
if accepts "$(merge_json "$gw_extra" '{"auth": {"token_cache": true}}')" &&
    accepts "$(merge_json "$gw_extra" '{"auth": {"token_cache": false}}')"; then
    token_cache=yes
    gw_variants=(gw-cache gw-nocache)
    features+=("auth.token_cache=true|false")
else
    token_cache=n/a
    gw_variants=(gw)
    features+=("auth.token_cache=n/a")
fi
rm -f "$work/probe.json" "$work/probe-audit.jsonl"
# BENCH_ATTRIBUTION=1: one more gateway, the first variant's config with
# fdatasync made a no-op (tests/fault/fault.so, FAULT_NOSYNC). Not a figure
# of the product (nothing is durable); it shows, in the same rounds, what
# the audit's syncs cost. The table prints it apart from the servers.
attr_variants=()
[ "$attribution" = 1 ] && attr_variants=(gw-nosync)

variant_extra() {
    case "$1" in
    gw-nosync) variant_extra "${gw_variants[0]}" ;;
    gw-cache) merge_json "$gw_extra" '{"auth": {"token_cache": true}}' ;;
    gw-nocache) merge_json "$gw_extra" '{"auth": {"token_cache": false}}' ;;
    *) echo "$gw_extra" ;;
    esac
}

# --------------------------------------------------- gateway runs, audit

gw_runs=0
audit_requests=0
audit_entries=0
audit_service=0
audit_bad=0
audit_verified=0
audit_verify_tool=no
[ -x "$AUDIT_TOOL" ] && audit_verify_tool=yes

# start_gateway VARIANT ENDPOINT TAG: a fresh gateway with a fresh audit file.
start_gateway() {
    local variant=$1 endpoint=$2 tag=$3 shim=()
    gw_audit=$work/audit-$tag.jsonl
    gw_config "$work/gateway-$tag.json" "$endpoint" "$gw_audit" "$(variant_extra "$variant")"
    [ "$variant" = gw-nosync ] && shim=(env LD_PRELOAD="$FAULT_SHIM" FAULT_NOSYNC=1)
    "${shim[@]}" "$GATEWAY" -c "$work/gateway-$tag.json" >"$out/logs/gateway-$tag.log" 2>&1 &
    gw_pid=$!
    wait_port "$gw_port" "$gw_pid" "smc-gateway ($tag)" "$out/logs/gateway-$tag.log"
}

# stop_gateway TAG CHECKED_OK REFUSED CONNS [WRK_OUTPUT...]: stop it (SIGTERM
# drains), then check that its audit file holds a decision and an outcome for
# every request it served and nothing else but REFUSED refusals (401), that
# the chain verifies, and that the 200s it served are the CHECKED_OK of the
# curl checks plus those wrk counted, give or take the CONNS requests per wrk
# run still in flight when wrk stopped (they are served, but not counted).
stop_gateway() {
    local tag=$1 want_ok=$2 refused=$3 c=$4 counts n lines bad f slack=0
    shift 4
    stop_pid "$gw_pid"
    gw_pid=""
    cp "$work/gateway-$tag.json" "$out/configs/gateway-$tag.json"
    # Request entries carry a request_id; the rest (checkpoints, ...) are
    # the gateway's own and only counted.
    counts=$("$PYTHON" - "$gw_audit" "$refused" <<'PY'
import json, sys
lines = allow = outcome_ok = refused = other = service = 0
with open(sys.argv[1], "rb") as f:
    for raw in f:
        e = json.loads(raw)
        if "request_id" not in e:
            service += 1
            continue
        lines += 1
        if e.get("event") == "decision" and e.get("decision") == "allow":
            allow += 1
        elif e.get("event") == "outcome" and e.get("status") == 200 and e.get("result") == "deleted":
            outcome_ok += 1
        elif e.get("event") == "decision" and e.get("decision") == "deny" and e.get("status") == 401:
            refused += 1
        else:
            other += 1
bad = int(allow != outcome_ok or other != 0 or refused != int(sys.argv[2]) or lines != 2 * outcome_ok + refused)
print(outcome_ok, lines - refused, service, bad)
PY
    )
    read -r n lines service bad <<<"$counts"
    for f in "$@"; do
        want_ok=$((want_ok + $("$PYTHON" "$here/report.py" --ok-count "$f")))
        slack=$((slack + c))
    done
    if [ "$n" -lt "$want_ok" ] || [ "$n" -gt $((want_ok + slack)) ]; then
        note "gateway $tag: the clients counted $want_ok answers, the audit file holds $n"
        bad=1
    fi
    if [ "$audit_verify_tool" = yes ]; then
        if "$AUDIT_TOOL" verify "$gw_audit" >"$out/logs/audit-verify-$tag.txt" 2>&1; then
            audit_verified=$((audit_verified + 1))
        else
            note "gateway $tag: smc-gateway-audit verify failed: $(head -n 3 "$out/logs/audit-verify-$tag.txt")"
            bad=1
        fi
    fi
    if [ "$bad" -ne 0 ]; then
        note "gateway $tag: audit file: $n outcomes in $lines request lines (2 per request expected); kept in $out/logs"
        cp "$gw_audit" "$out/logs/" 2>/dev/null || true
        audit_bad=$((audit_bad + 1))
    fi
    gw_runs=$((gw_runs + 1))
    audit_requests=$((audit_requests + n))
    audit_entries=$((audit_entries + lines))
    audit_service=$((audit_service + service))
    # 2 lines of ~0.5 KB per request: do not keep hundreds of MB per run.
    rm -f "$gw_audit"
}

# ------------------------------------------------------ correctness first

# check NAME EXPECTED_STATUS CURL_ARGS...: one request, status (and for 200
# the body: the RequestId in $want_body) as expected, or abort.
want_body=$SMC_REQUEST_ID
check() {
    local name=$1 want=$2 got body
    shift 2
    got=$(curl -sS -o "$work/check-body" -w '%{http_code}' --max-time 10 "$@") || got="no answer"
    body=$(head -c 600 "$work/check-body" 2>/dev/null || true)
    if [ "$got" != "$want" ]; then
        die "$name answered $got instead of $want: $body"
    fi
    if [ "$want" = 200 ] && ! grep -q -- "$want_body" "$work/check-body"; then
        die "$name answered 200 without $want_body: $body"
    fi
}

auth=(-H "Authorization: Bearer $token")
check "static upstream (POST form)" 200 -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
    --data 'Action=DeleteReplicationJob&JobId=j-bench1' "$static_url"
check "nginx plain proxy" 200 -X DELETE "${auth[@]}" "http://127.0.0.1:$nginx_port/jobs/j-bench1"
check "HAProxy" 200 -X DELETE "${auth[@]}" "http://127.0.0.1:$haproxy_port/jobs/j-bench1"
check "HAProxy (no token)" 401 -X DELETE "http://127.0.0.1:$haproxy_port/jobs/j-bench1"
refusals=(tampered "$tampered" "wrong aud" "$bad_aud" "wrong iss" "$bad_iss" expired "$expired")
for ((i = 0; i < ${#refusals[@]}; i += 2)); do
    check "HAProxy (${refusals[i]} token)" 401 -X DELETE -H "Authorization: Bearer ${refusals[i + 1]}" \
        "http://127.0.0.1:$haproxy_port/jobs/j-bench1"
done
for v in "${gw_variants[@]}"; do
    start_gateway "$v" "$static_url" "check-$v"
    check "smc-gateway ($v)" 200 -X DELETE "${auth[@]}" "http://127.0.0.1:$gw_port/jobs/j-bench1"
    for ((i = 0; i < ${#refusals[@]}; i += 2)); do
        check "smc-gateway ($v, ${refusals[i]} token)" 401 -X DELETE \
            -H "Authorization: Bearer ${refusals[i + 1]}" "http://127.0.0.1:$gw_port/jobs/j-bench1"
    done
    stop_gateway "check-$v" 1 $((${#refusals[@]} / 2)) 0
done
[ "$audit_bad" -eq 0 ] || die "the gateway's audit file does not match the requests it served"

# ------------------------------------------------------------- rounds

# run_wrk SERVER CONNS SECONDS OUTPUT: wrk against one server, with the CPU
# the server, wrk and everything else used meanwhile (tests/bench/wrkrun.py).
run_wrk() {
    local port pid
    case "$1" in
    nginx) port=$nginx_port pid=$nginx_pid ;;
    haproxy) port=$haproxy_port pid=$haproxy_pid ;;
    *) port=$gw_port pid=$gw_pid ;;
    esac
    # In the background so that a signal to the bench acts at once (bash
    # runs traps only between foreground commands); cleanup stops it.
    "$PYTHON" "$here/wrkrun.py" "$4" $$ "$pid" "$wait_idle" -- wrk -t"$threads" -c"$2" -d"$3"s --timeout 10s \
        --latency -s "$here/delete.lua" "http://127.0.0.1:$port/jobs/j-bench1" &
    wrk_pid=$!
    if ! wait "$wrk_pid"; then
        wrk_pid=""
        cat "$4" >&2
        die "wrk failed (output above)"
    fi
    wrk_pid=""
}

# bench_one SERVER CONNS SECONDS OUTPUT TAG: one wrk run against one server.
bench_one() {
    local server=$1 c=$2 s=$3 output=$4 tag=$5
    case "$server" in
    gw*) start_gateway "$server" "$static_url" "$tag" ;;
    esac
    run_wrk "$server" "$c" "$s" "$output"
    case "$server" in
    gw*) stop_gateway "$tag" 0 0 "$c" "$output" ;;
    esac
}

servers=(nginx haproxy "${gw_variants[@]}" "${attr_variants[@]}")
note "results in $out; ${#servers[@]} servers x $rounds rounds x ${secs}s (+ ${warmup}s warm-up each), then the latency-bound rounds"
if [ "$warmup" -gt 0 ]; then
    for s in "${servers[@]}"; do
        bench_one "$s" "$conns" "$warmup" "$out/wrk/warmup-$s.txt" "warmup-$s"
    done
fi
for r in $(seq 1 "$rounds"); do
    for s in "${servers[@]}"; do
        bench_one "$s" "$conns" "$secs" "$out/wrk/r$r-$s.txt" "r$r-$s"
        note "round $r/$rounds $s: $("$PYTHON" "$here/report.py" --brief "$out/wrk/r$r-$s.txt")"
    done
done

# ------------------------------------------- profile (BENCH_PROFILE=1)

if [ "$profile" = 1 ]; then
    if command -v perf >/dev/null && perf record -q -e cpu-clock -o /dev/null true >/dev/null 2>&1; then
        start_gateway "${gw_variants[0]}" "$static_url" profile
        # perf starts as wrk does (no idle wait) and stops a second early.
        saved_wait_idle=$wait_idle
        wait_idle=0
        (
            sleep 0.5
            exec perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$gw_pid" -o "$out/perf.data" \
                -- sleep "$((secs > 2 ? secs - 1 : 1))"
        ) >"$out/logs/perf-record.log" 2>&1 &
        perf_pid=$!
        pids+=("$perf_pid")
        run_wrk gw "$conns" "$secs" "$out/wrk/profile.txt"
        wait "$perf_pid" || true
        wait_idle=$saved_wait_idle
        stop_gateway profile 0 0 "$conns" "$out/wrk/profile.txt"
        # Per thread (samples at 999 Hz: 999 a second is one busy core);
        # flat (where the CPU goes); children (each function with all it
        # calls: the pipeline's stages).
        perf script -i "$out/perf.data" -F tid,comm 2>/dev/null | sort | uniq -c | sort -rn >"$out/perf-threads.txt" || true
        perf report -i "$out/perf.data" --no-children --sort dso,sym -g none --percent-limit 0.3 \
            --stdio >"$out/perf-flat.txt" 2>/dev/null || true
        perf report -i "$out/perf.data" --children --sort sym -g none --percent-limit 1 \
            --stdio >"$out/perf-children.txt" 2>/dev/null || true
        note "profile of the gateway: $out/perf-flat.txt, $out/perf-children.txt"
    else
        note "BENCH_PROFILE=1: perf is missing or cannot sample here; no profile"
    fi
fi

# ------------------------------------------------- latency-bound rounds

"$SIM" --listen 127.0.0.1:0 --port-file "$work/sim.port" --credentials "$work/credentials.json" \
    --all-jobs-exist --quiet --no-record >"$out/logs/smc-sim.log" 2>&1 &
sim_pid=$!
pids+=("$sim_pid")
for i in $(seq 1 100); do
    [ -s "$work/sim.port" ] && break
    running "$sim_pid" || die "smc-sim exited during start-up (log: $out/logs/smc-sim.log)"
    sleep 0.1
done
sim_port=$(cat "$work/sim.port")
sim_url=http://127.0.0.1:$sim_port/
curl -sS --fail --max-time 5 -X POST -H 'Content-Type: application/json' \
    --data "{\"latency_ms\": $lat_ms}" "${sim_url}_sim/fault" >"$out/logs/sim-fault.json" ||
    die "smc-sim refused the latency setting"

lat_variant=${gw_variants[0]}
start_gateway "$lat_variant" "$sim_url" latency
want_body='"upstream_request_id":"'
check "smc-gateway -> smc-sim" 200 -X DELETE "${auth[@]}" "http://127.0.0.1:$gw_port/jobs/j-bench1"
# As many rounds as the throughput table has: the machine is noisy, the table gives the median.
for r in $(seq 1 "$rounds"); do
    run_wrk gw "$lat_conns" "$secs" "$out/wrk/latency-$lat_conns-r$r.txt"
    note "latency-bound $lat_conns connections, round $r/$rounds: $("$PYTHON" "$here/report.py" --brief "$out/wrk/latency-$lat_conns-r$r.txt")"
done
cp "$out/wrk/latency-$lat_conns-r1.txt" "$out/wrk/latency-$lat_conns.txt"
hwm_before_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$gw_pid/status")

# Sample the gateway's RSS and the requests the simulator holds while the
# 1,000-connection round runs (held there = in flight in the gateway).
(
    while running "$gw_pid"; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status" 2>/dev/null || echo 0)
        pending=$(curl -s --max-time 1 "${sim_url}_sim/stats" |
            "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("pending", 0))' 2>/dev/null || echo 0)
        echo "$(date +%s.%N) rss_kb=$rss sim_pending=$pending"
        sleep 0.5
    done
) >"$out/logs/rss-samples.txt" &
sampler_pid=$!
run_wrk gw "$rss_conns" "$secs" "$out/wrk/latency-$rss_conns.txt"
stop_pid "$sampler_pid"
sampler_pid=""
note "latency-bound $rss_conns connections: $("$PYTHON" "$here/report.py" --brief "$out/wrk/latency-$rss_conns.txt")"
hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$gw_pid/status")
rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status")
gw_nofile=$(awk '/^Max open files/ {print $4}' "/proc/$gw_pid/limits")
max_pending=$(sed -n 's/.*sim_pending=\([0-9]*\).*/\1/p' "$out/logs/rss-samples.txt" | sort -n | tail -n 1)
stop_gateway latency 1 0 "$rss_conns" "$out"/wrk/latency-"$lat_conns"-r*.txt "$out/wrk/latency-$rss_conns.txt"
stop_pid "$sim_pid"

# ---------------------------------------------------------------- table

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
nginx_version=$(nginx -v 2>&1 | sed -n 's|^nginx version: nginx/||p' || true)
wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
cat >"$out/meta.env" <<EOF
cpus=$(nproc)
cpu_model=$cpu_model
fs_type=$fs_type
fs_source=${fs_source:-?}
audit_dir=$audit_dir
rounds=$rounds
seconds=$secs
connections=$conns
threads=$threads
servers=${servers[*]}
attribution=${attr_variants[*]}
token_cache=$token_cache
features=${features[*]}
latency_variant=$lat_variant
upstream_latency_ms=$lat_ms
latency_connections=$lat_conns
rss_connections=$rss_conns
vmhwm_kb=$hwm_kb
vmhwm_after_latency_round_kb=$hwm_before_kb
vmrss_kb=$rss_kb
gateway_nofile=$gw_nofile
sim_max_pending=${max_pending:-0}
audit_runs=$gw_runs
audit_requests=$audit_requests
audit_entries=$audit_entries
audit_service_entries=$audit_service
audit_bad=$audit_bad
audit_verified=$audit_verified
audit_verify_tool=$audit_verify_tool
haproxy_version=$haproxy_version
gateway_binary=$gw_version, sha256 $gw_sha, tree $git_rev
nginx_version=$nginx_version
wrk_version=$wrk_version
EOF

status=0
"$PYTHON" "$here/report.py" --table "$out" >"$out/table.txt" || status=$?
cat "$out/table.txt"
echo "raw wrk outputs, configs and logs: $out"
[ "$audit_bad" -eq 0 ] || { note "the audit files did not match the requests served"; status=1; }
exit "$status"
