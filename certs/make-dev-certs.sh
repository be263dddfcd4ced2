#!/bin/sh
# Development keys and certificates for `make run` and the tests, made with
# the openssl command line into an ignored folder (default certs/dev).
# With a second argument (the smc-token program), also a JWKS document of the
# demo JWT keys (jwks.json, kids demo-rs256 and demo-es256).
# Idempotent: files that exist are kept. Private keys get mode 0600.
# Never use these in production; see README.md, "TLS certificates".
set -eu
out=${1:-certs/dev}
token_tool=${2:-}
case "$token_tool" in ""|/*) ;; *) token_tool="$(pwd)/$token_tool" ;; esac
mkdir -p "$out"
chmod 0700 "$out"
cd "$out"
umask 077

days=825
have() { [ -s "$1" ]; }

# JWT signing keys (the identity provider's side) and their public halves.
have jwt-rs256.key || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out jwt-rs256.key 2>/dev/null
have jwt-rs256.pub.pem || openssl pkey -in jwt-rs256.key -pubout -out jwt-rs256.pub.pem
have jwt-es256.key || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out jwt-es256.key
have jwt-es256.pub.pem || openssl pkey -in jwt-es256.key -pubout -out jwt-es256.pub.pem
have jwt-hs256.secret || openssl rand -hex 32 > jwt-hs256.secret

# Audit checkpoint signing key (Ed25519) and its public half for auditors.
have audit-ed25519.key || openssl genpkey -algorithm ED25519 -out audit-ed25519.key
have audit-ed25519.pub.pem || openssl pkey -in audit-ed25519.key -pubout -out audit-ed25519.pub.pem

# Server CA and a server certificate for localhost / 127.0.0.1.
if ! have ca.crt; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
        -days $days -subj "/CN=smc-gateway development CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if ! have server.crt; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
        -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days \
        -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext
fi

# Client CA and one client certificate (mutual TLS).
if ! have client-ca.crt; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client-ca.key -out client-ca.crt \
        -days $days -subj "/CN=smc-gateway development client CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if ! have client.crt; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr \
        -subj "/CN=dashboard-dev" 2>/dev/null
    printf 'subjectAltName=DNS:dash.localhost,URI:spiffe://dev/dashboard\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -days $days \
        -extfile client.ext -out client.crt 2>/dev/null
    rm -f client.csr client.ext
fi

# Demo AccessKey for the local simulator (not a real Alibaba Cloud key).
if ! have credentials.json; then
    secret=$(openssl rand -hex 20)
    printf '{\n  "prod": {"access_key_id": "LTAIdemo0000000000000001", "access_key_secret": "%s"}\n}\n' "$secret" \
        > credentials.json
fi

# The demo identity provider's JWKS (public keys only).
if [ -n "$token_tool" ] && ! have jwks.json; then
    "$token_tool" --jwks jwt-rs256.pub.pem:demo-rs256 jwt-es256.pub.pem:demo-es256 > jwks.json
fi

chmod 0600 ./*.key jwt-hs256.secret credentials.json
chmod 0644 ./*.crt ./*.pem
[ -f jwks.json ] && chmod 0644 jwks.json
exit 0
