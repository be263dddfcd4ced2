#!/bin/sh
# make run: the local SMC simulator and the gateway in front of it, with the
# development keys of certs/dev, and a curl line that deletes a demo job.
# With JWKS=1 the gateway takes its JWT keys from a JWKS URL (the simulator
# plays the identity provider's part). Ctrl-C stops both.
set -eu
build=${1:-build}
top=$(pwd)
certs=${CERTS:-"$top/certs/dev"}
demo=${DEMO_DIR:-"$build/demo"}
gw_port=${GW_PORT:-8080}
sim_port=${SIM_PORT:-8081}
admin_port=${ADMIN_PORT:-9090}
mkdir -p "$demo"
chmod 0700 "$demo"

cat > "$demo/jobs.json" <<JOBS
{"j-demo1": "Ready", "j-demo2": "Ready", "j-demo3": "Stopped", "j-demorunning": "Running"}
JOBS
# The daemon refuses to run as root unless the config says so explicitly.
allow_root=false
[ "$(id -u)" -eq 0 ] && allow_root=true
if [ "${JWKS:-}" = 1 ]; then
    [ -f "$certs/jwks.json" ] || "$build/smc-token" --jwks "$certs/jwt-rs256.pub.pem:demo-rs256" \
        "$certs/jwt-es256.pub.pem:demo-es256" > "$certs/jwks.json"
    keys="\"algorithms\": [\"RS256\", \"ES256\"], \"jwks_url\": \"http://127.0.0.1:$sim_port/_sim/jwks\""
    sim_jwks="--jwks $certs/jwks.json"
    kid="--kid demo-rs256"
else
    keys="\"algorithms\": [\"RS256\"], \"key_file\": \"$certs/jwt-rs256.pub.pem\""
    sim_jwks=""
    kid=""
fi
cat > "$demo/gateway.json" <<CONF
{
  "listen": "127.0.0.1:$gw_port",
  "allow_root": $allow_root,
  "instance": "gw-demo",
  "admin_listen": "127.0.0.1:$admin_port",
  "tls": {
    "cert_file": "$certs/server.crt",
    "key_file": "$certs/server.key",
    "client_ca_file": "$certs/client-ca.crt",
    "client_auth": "optional"
  },
  "auth": {
    $keys,
    "issuer": "https://idp.example.com",
    "audience": "smc-gateway",
    "team_claim": "team"
  },
  "policy_file": "$top/policy/teams.example.json",
  "credentials_file": "$certs/credentials.json",
  "upstream": {"endpoint": "http://127.0.0.1:$sim_port/"},
  "audit": {"file": "$demo/audit.jsonl", "signing_key_file": "$certs/audit-ed25519.key"}
}
CONF

# shellcheck disable=SC2086 # sim_jwks is empty or two words
"$build/smc-sim" --listen "127.0.0.1:$sim_port" --credentials "$certs/credentials.json" \
    --jobs "$demo/jobs.json" $sim_jwks 2> "$demo/sim.log" &
sim=$!
# The gateway fetches the JWKS at start: the simulator must be up first.
for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://127.0.0.1:$sim_port/_sim/health" && break
    sleep 0.1
done
"$build/smc-gateway" -c "$demo/gateway.json" &
gw=$!
trap 'kill $gw $sim 2>/dev/null || true; wait $gw $sim 2>/dev/null || true; exit 0' INT TERM
trap 'kill $gw $sim 2>/dev/null || true' EXIT

# Wait until both answer.
for _ in $(seq 1 50); do
    if curl -s -o /dev/null "http://127.0.0.1:$admin_port/readyz" && curl -s -o /dev/null "http://127.0.0.1:$sim_port/_sim/health"; then
        break
    fi
    sleep 0.1
done

# shellcheck disable=SC2086 # kid is empty or two words
token=$("$build/smc-token" --alg RS256 --key "$certs/jwt-rs256.key" --sub alice@example.com --team migration \
    --ttl 43200 $kid)
echo
echo "smc-gateway is listening on https://localhost:$gw_port (simulated SMC API on :$sim_port,"
echo "health and metrics on http://127.0.0.1:$admin_port/{healthz,readyz,metrics})."
echo "Audit log: $demo/audit.jsonl    Demo jobs: j-demo1 j-demo2 j-demo3 (j-demorunning cannot be deleted)"
echo "Verify it: build/smc-gateway-audit verify --pubkey $certs/audit-ed25519.pub.pem $demo/audit.jsonl"
echo "Delete a demo job (200; a second time gives 404; add --cert $certs/client.crt --key $certs/client.key for mTLS):"
echo
echo "curl -sS --cacert $certs/ca.crt -X DELETE -H 'Authorization: Bearer $token' https://localhost:$gw_port/jobs/j-demo1"
echo
echo "Ctrl-C stops both."
wait $gw
