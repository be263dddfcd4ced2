#!/usr/bin/python3
"""Write the seed corpora of tests/fuzz/corpus/<target>/ (committed; run again
only to change them). Seeds are small, valid or nearly valid inputs, so the
fuzzers start deep in each parser:

  jwks       an IdP's key set (RSA, P-256/384/521) and one whose keys are all
             skipped for a different reason each
  jwt        tokens signed with the harness's fixed HS* secret (they verify and
             reach the claim checks), RS256/ES256 tokens, broken shapes, and
             HEADER NUL CLAIMS inputs for the harness's signing mode
  auditline  smc-gateway-audit-v1 logs with checkpoints signed by the
             harness's fixed Ed25519 key (so they verify), across rotated
             files ("\\x1e\\n" separates files), and tampered variants
  config, policy, creds, upstream, route, http, jsonescape: see below

Run with Debian's python3 (python3-cryptography):
    /usr/bin/python3 tests/fuzz/make-seeds.py
The output is the same on every run (no random keys), so running it again
changes only what the script changed.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(os.path.dirname(HERE))

# Shared with the harnesses: keep in step with fuzz_jwt.c and fuzz_auditline.c.
HS_SECRET = b"fuzz-secret-0123456789abcdef0123456789"
ED25519_SEED = b"smc-gateway fuzz audit key seed!"
NOW = 1764331200  # FUZZ_NOW of fuzz_jwt.c: 2025-11-28T12:00:00Z


def stable_bytes(label, n):
    """n bytes that depend only on label: the seeds come out the same on every run."""
    out = b""
    while len(out) < n:
        out += hashlib.sha512(label.encode() + len(out).to_bytes(4, "big")).digest()
    return out[:n]


def rsa_public(label, bits):
    """An RSA public key of exactly bits bits (a made-up modulus: the gateway checks size, not primality)."""
    n = int.from_bytes(stable_bytes(label, bits // 8), "big") | (1 << (bits - 1)) | 1
    return rsa.RSAPublicNumbers(65537, n)


def ec_public(label, curve):
    """A valid point on curve, from a fixed private scalar."""
    scalar = int.from_bytes(stable_bytes(label, 32), "big") % (1 << 250) + 1
    return ec.derive_private_key(scalar, curve).public_key().public_numbers()


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def cjson(o):
    return json.dumps(o, separators=(",", ":"))


# ---------------------------------------------------------------- route
def route():
    seeds = {
        "job": "/jobs/j-bp17m1vi6x21qhqk",
        "job-query": "/jobs/j-bp17m1vi6x21qhqk?force=1&x=/y",
        "job-max": "/jobs/j-" + "a" * 64,
        "job-too-long": "/jobs/j-" + "a" * 65,
        "job-slash": "/jobs/j-bp17m1vi6x21qhqk/",
        "job-sub": "/jobs/j-bp17m1vi6x21qhqk/events",
        "job-bad": "/jobs/j-bp1_7m1%2F",
        "job-empty": "/jobs/",
        "jobs": "/jobs",
        "healthz": "/healthz",
        "readyz": "/readyz?verbose",
        "metrics": "/metrics",
        "audit": "/audit?since=2026-01-01T00:00:00Z&job_id=j-abc",
        "absolute": "http://gw.example.com/jobs/j-abc",
        "asterisk": "*",
        "request-id": "req-2026.11.28_a1b2c3",
        "ticket": "CHG:2041/prod-db.01",
        "encoded": "/jobs/j-abc%00def",
        "utf8": "/jobs/j-\u00e9t\u00e9",
        # X-Forwarded-For values and trusted_proxies entries
        "xff": "203.0.113.9, 10.1.2.3,192.168.1.7",
        "xff-v6": "2001:db8::1, [fd00::2], fd00::3 , ::ffff:10.0.0.1",
        "xff-bad": "203.0.113.9, unknown, 10.0.0.1",
        "cidr": "2001:db8::/32",
        "cidr-v4": "10.0.0.0/8",
        # GET /audit query strings
        "audit-query": "/audit?team=migration&sub=alice%40example.com&decision=deny&since=2026-11-28T00:00:00Z"
                       "&until=2026-11-29T00:00:00.5%2B01:00&limit=50&cursor=1234",
        "audit-query-bad": "/audit?job=j-%zz&limit=0&&event=outcome&result=deleted",
    }
    for k, v in seeds.items():
        write("route", k, v)
    # PROXY protocol headers (the bytes a load balancer sends first).
    write("route", "proxy-v1", b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\nGET /healthz HTTP/1.1\r\n")
    write("route", "proxy-v1-v6", b"PROXY TCP6 2001:db8::1 2001:db8::2 51234 443\r\n")
    write("route", "proxy-v1-unknown", b"PROXY UNKNOWN\r\n")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    write("route", "proxy-v2-tcp4", sig + b"\x21\x11\x00\x0c" + bytes([203, 0, 113, 9, 10, 0, 0, 1]) +
          struct.pack(">HH", 51234, 443) + b"DELETE /jobs/j-abc HTTP/1.1\r\n")
    write("route", "proxy-v2-tcp6", sig + b"\x21\x21\x00\x24" + bytes(range(32)) + struct.pack(">HH", 1, 2))
    write("route", "proxy-v2-local", sig + b"\x20\x00\x00\x00")


# ---------------------------------------------------------------- http
def http():
    """Request heads as a connection carries them; the harness reads the
    first byte as the size of the pieces the rest arrives in."""
    tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
    seeds = {
        "delete": "DELETE /jobs/j-bp17m1vi6x21qhqk HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"
                  "X-Request-Id: r-1\r\nX-Change-Ticket: CHG:1\r\n\r\n" % tok,
        "pipelined": "DELETE /jobs/j-1 HTTP/1.1\r\nHost: gw\r\n\r\nGET /healthz HTTP/1.1\r\nHost: gw\r\n"
                     "Connection: close\r\n\r\n",
        "http10": "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "lf-only": "GET /metrics HTTP/1.1\nHost: gw\n\n",
        "leading-crlf": "\r\n\r\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n",
        "body": "DELETE /jobs/j-1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello",
        "two-lengths": "DELETE /jobs/j-1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
        "chunked": "DELETE /jobs/j-1 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "obs-fold": "GET / HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n continued\r\n\r\n",
        "space-colon": "GET / HTTP/1.1\r\nHost : gw\r\n\r\n",
        "bare-cr": "GET / HTTP/1.1\r\nHost: g\rw\r\n\r\n",
        "h2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "cors": "OPTIONS /jobs/j-1 HTTP/1.1\r\nHost: gw\r\nOrigin: https://dash.example.com\r\n"
                "Access-Control-Request-Method: DELETE\r\n\r\n",
        "xff": "DELETE /jobs/j-1 HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 203.0.113.9\r\n"
               "x-forwarded-for: 10.0.0.1, 10.0.0.2\r\n\r\n",
    }
    for i, (k, v) in enumerate(sorted(seeds.items())):
        write("http", k, bytes([i]) + v.encode())
    write("http", "high-bytes", b"\x05DELETE /jobs/j-\xff\xfe HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n")


# ---------------------------------------------------------------- jwt
def jwt_seeds():
    # RS256 and ES256 tokens cannot verify in the harness (its RSA and EC keys
    # are made at start), so their signatures are stand-ins of the right size.

    def token(header, claims, alg=None, key=None):
        h = header if isinstance(header, str) else cjson(header)
        c = claims if isinstance(claims, str) else cjson(claims)
        signing = (b64url(h.encode()) + "." + b64url(c.encode())).encode()
        alg = alg or (header.get("alg") if isinstance(header, dict) else "HS256")
        if alg.startswith("HS"):
            md = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
            sig = hmac.new(key or HS_SECRET, signing, md).digest()
        elif alg.startswith("RS"):
            sig = stable_bytes("rs-sig" + signing.decode(), 256)
        else:
            sig = stable_bytes("es-sig" + signing.decode(), 64)
        return signing.decode() + "." + b64url(sig)

    base = {"sub": "alice@example.com", "iss": "https://idp.example.com", "aud": "smc-gateway",
            "exp": NOW + 600, "iat": NOW - 10, "team": "migration"}
    seeds = {
        "hs256-ok": token({"alg": "HS256", "typ": "JWT"}, base),
        "hs256-jti-kid": token({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, dict(base, jti="t-1")),
        "hs384-ok": token({"alg": "HS384"}, base),
        "hs512-ok": token({"alg": "HS512"}, base),
        "hs256-groups": token({"alg": "HS256"}, dict(base, groups=["staff", "smc-migration", "smc-ops"])),
        "hs256-realm": token({"alg": "HS256"}, dict(base, realm_access={"roles": ["migration", "ops"]},
                                                    aud=["other", "smc-gateway"], nbf=NOW - 5)),
        "hs256-nested": token({"alg": "HS256"}, dict(base, a={"b": {"c": "xteam"}}, team=["migration", 7, ""])),
        "hs256-expired": token({"alg": "HS256"}, dict(base, exp=NOW - 61)),
        "hs256-nbf": token({"alg": "HS256"}, dict(base, nbf=NOW + 3600)),
        "hs256-iat-future": token({"alg": "HS256"}, dict(base, iat=NOW + 3600)),
        "hs256-bad-iss": token({"alg": "HS256"}, dict(base, iss="https://evil.example.com")),
        "hs256-bad-aud": token({"alg": "HS256"}, dict(base, aud=["other"])),
        "hs256-no-sub": token({"alg": "HS256"}, {k: v for k, v in base.items() if k != "sub"}),
        "hs256-dup": token('{"alg":"HS256","alg":"HS256"}', base, alg="HS256"),
        "hs256-crit": token({"alg": "HS256", "crit": ["exp"]}, base),
        "hs256-typ": token({"alg": "HS256", "typ": "JOSE+JSON"}, base),
        "hs256-wrong-key": token({"alg": "HS256"}, base, key=b"another-secret-another-secret-xx"),
        "rs256": token({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}, base),
        "es256": token({"alg": "ES256"}, base),
        "none": b64url(b'{"alg":"none"}') + "." + b64url(cjson(base).encode()) + ".",
        "malformed": "eyJhbGciOiJIUzI1NiJ9.e30",
        "four-parts": "a.b.c.d",
    }
    for k, v in seeds.items():
        write("jwt", k, v)
    # Signing mode: HEADER NUL CLAIMS, signed by the harness.
    signed = {
        "signed-hs256": ({"alg": "HS256", "typ": "JWT"}, dict(base, jti="t-2")),
        "signed-hs512-kid": ({"alg": "HS512", "kid": "k1"}, base),
        "signed-rs256": ({"alg": "RS256"}, dict(base, groups=["smc-ops"])),
        "signed-es256": ({"alg": "ES256", "typ": "at+jwt"}, base),
        "signed-es256-kid": ({"alg": "ES256", "kid": "ec-1"}, base),
        "signed-es256-other-kid": ({"alg": "ES256", "kid": "ec-2"}, base),
        "signed-rs256-kid": ({"alg": "RS256", "kid": "rsa-1"}, dict(base, team=["ops", "migration"])),
        "signed-aud-array": ({"alg": "HS256"}, dict(base, aud=["x", "smc-gateway"], realm_access={"roles": "ops"})),
        "signed-types": ({"alg": "HS256"}, dict(base, nbf="0", aud=["x", 1])),
        "signed-float": ({"alg": "HS256"}, dict(base, exp=1.7e9, iat=1e308)),
    }
    for k, (h, c) in signed.items():
        write("jwt", k, cjson(h).encode() + b"\0" + cjson(c).encode())


# ---------------------------------------------------------------- jwks
def jwks():
    rsa_key = rsa_public("jwks-rsa", 2048)
    small = rsa_public("jwks-rsa-short", 1024)

    def ec_jwk(curve, crv, size, **extra):
        pub = ec_public("jwks-" + crv + extra.get("kid", ""), curve)
        return dict({"kty": "EC", "crv": crv, "x": b64url(pub.x.to_bytes(size, "big")),
                     "y": b64url(pub.y.to_bytes(size, "big"))}, **extra)

    def rsa_jwk(nums, **extra):
        n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
        e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
        return dict({"kty": "RSA", "n": b64url(n), "e": b64url(e)}, **extra)

    good = {"keys": [rsa_jwk(rsa_key, kid="rsa-2026", use="sig", alg="RS256"),
                     ec_jwk(ec.SECP256R1(), "P-256", 32, kid="ec-256", alg="ES256"),
                     ec_jwk(ec.SECP384R1(), "P-384", 48, kid="ec-384"),
                     ec_jwk(ec.SECP521R1(), "P-521", 66, kid="ec-521", use="sig")]}
    write("jwks", "idp", json.dumps(good, indent=2) + "\n")
    bad_point = ec_jwk(ec.SECP256R1(), "P-256", 32, kid="off-curve")
    bad_point["y"] = b64url(b"\x01" * 32)
    skipped = {"keys": [
        rsa_jwk(small, kid="short"),
        dict(rsa_jwk(rsa_key), kid="enc", use="enc"),
        dict(rsa_jwk(rsa_key), kid="pinned-es", alg="ES256"),
        dict(rsa_jwk(rsa_key), kid="unknown-alg", alg="PS256"),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ec_jwk(ec.SECP256K1(), "secp256k1", 32, kid="k1"),
        bad_point,
        {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
        {"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "", "x": "AA", "y": "AA"},
        "not an object",
        dict(rsa_jwk(rsa_key), kid="x" * 129),
    ]}
    write("jwks", "skipped", json.dumps(skipped) + "\n")
    write("jwks", "empty", '{"keys":[]}')
    write("jwks", "not-jwks", '{"kty":"RSA","n":"AQAB","e":"AQAB"}')
    write("jwks", "truncated", json.dumps(good)[:200])


# ---------------------------------------------------------------- config
def config():
    readme_example = {
        "listen": "127.0.0.1:8080",
        "instance": "gw-1",
        "auth": {"algorithms": ["RS256"], "key_file": "keys/jwt-rs256.pub.pem", "issuer": "https://idp.example.com",
                 "audience": "smc-gateway", "team_claim": "team", "leeway_seconds": 60, "max_token_age_seconds": 0},
        "policy_file": "policy/teams.json",
        "credentials_file": "/etc/smc-gateway/credentials.json",
        "upstream": {"endpoint": "https://smc.aliyuncs.com/", "method": "POST", "connect_timeout_ms": 3000,
                     "timeout_ms": 10000, "deadline_ms": 25000, "max_retries": 2},
        "audit": {"file": "/var/lib/smc-gateway/audit.jsonl"},
        "limits": {"max_header_bytes": 32768},
    }
    write("config", "readme-example", json.dumps(readme_example, indent=2) + "\n")
    # Fixture descriptors of fuzz_config.c: 200 policy, 201 credentials,
    # 202 RSA public key, 203 HMAC secret, 204 EC P-256 public key,
    # 205 Ed25519 private key (audit checkpoints).
    rs = dict(readme_example, auth=dict(readme_example["auth"], key_file="202"), policy_file="200",
              credentials_file="201")
    write("config", "fixtures-rs256", json.dumps(rs, indent=2) + "\n")
    hs = dict(rs, auth={"algorithms": ["HS256", "HS512"], "key_file": "/proc/self/fd/203", "issuer": "https://idp",
                        "audience": "smc-gateway", "team_claim": "realm_access.roles", "team_prefix": "smc-"},
              log_level="debug", listen="[::1]:8443")
    write("config", "fixtures-hs256", json.dumps(hs) + "\n")
    es = dict(rs, auth=dict(rs["auth"], algorithms=["ES256"], key_file="204"),
              upstream={"endpoint": "http://127.0.0.1:9000/", "method": "GET", "proxy": "http://proxy:3128",
                        "ca_file": "ca.pem", "max_retries": 0},
              audit={"file": "audit.jsonl", "signing_key_file": "205", "checkpoint_every": 10,
                     "checkpoint_seconds": 30, "rotate_bytes": 1048576})
    write("config", "fixtures-es256-audit-key", json.dumps(es, indent=1) + "\n")
    # 206: a JWKS document (the RSA and EC keys above, and one it skips).
    jw = dict(rs, auth={"algorithms": ["RS256", "ES256"], "jwks_file": "206", "issuer": "https://idp.example.com",
                        "audience": "smc-gateway", "token_cache": False})
    write("config", "fixtures-jwks-file", json.dumps(jw, indent=2) + "\n")
    url = dict(rs, auth={"algorithms": ["RS256"], "jwks_url": "https://idp.example.com/.well-known/jwks.json",
                         "jwks_refresh_seconds": 300, "issuer": "https://idp.example.com", "audience": "smc-gateway"},
               admin_listen="127.0.0.1:9090", trusted_proxies=["10.0.0.0/8", "fd00::/8"], proxy_protocol=True,
               cors={"allowed_origins": ["https://dash.example.com"], "max_age_seconds": 60},
               upstream_rate_limit={"requests": 100, "per_seconds": 1}, shutdown_timeout_ms=30000,
               limits={"max_connections": 100, "header_timeout_ms": 5000, "max_upstream_queue": 10})
    write("config", "fixtures-jwks-url", json.dumps(url, indent=2) + "\n")
    mixed = dict(rs, auth=dict(rs["auth"], algorithms=["HS256", "RS256"]))
    write("config", "mixed-algs", json.dumps(mixed) + "\n")
    bad = dict(rs, listen="localhost", instance="gw 1!", unknown=1,
               upstream={"endpoint": "http://smc.aliyuncs.com/", "timeout_ms": 99999, "deadline_ms": 100},
               limits={"max_header_bytes": 10, "max_body_bytes": "x1"})
    write("config", "errors", json.dumps(bad) + "\n")
    write("config", "not-object", "[1, 2, 3]\n")
    write("config", "truncated", json.dumps(rs)[:120])


# ---------------------------------------------------------------- policy
def policy():
    with open(os.path.join(ROOT, "policy", "teams.example.json"), "rb") as f:
        write("policy", "teams-example", f.read())
    full = {
        "description": "every rule",
        "teams": {
            "migration": {"credential": "prod", "allow": ["DeleteReplicationJob"], "jobs": ["j-bp1*", "j-demo?"],
                          "subjects": ["alice@example.com", "svc-*"]},
            "ops": {"credential": "prod", "allow": ["DeleteReplicationJob"], "require_ticket": True,
                    "client_certs": ["CN=gw-client", "DNS:client.example.com"],
                    "rate_limit": {"requests": 10, "per_seconds": 60}},
            "auditors": {"credential": "none", "allow": [], "description": "reads /audit only"},
        },
        "auditors": ["auditors", "ops"],
    }
    write("policy", "full", json.dumps(full, indent=2) + "\n")
    bad = {"teams": {"x": {"credential": "", "allow": ["DeleteEverything"], "jobs": [1],
                           "client_certs": ["O=acme"], "rate_limit": {"requests": 0}, "extra": True},
                     "y": []}, "auditors": ["z"]}
    write("policy", "errors", json.dumps(bad) + "\n")
    write("policy", "globs", json.dumps({"teams": {"g": {"credential": "c", "allow": ["DeleteReplicationJob"],
                                                         "jobs": ["*", "j-**?*", "?"], "subjects": ["*@*.com"]}}}))


# ---------------------------------------------------------------- creds
def creds():
    write("creds", "readme", json.dumps({"prod": {"access_key_id": "LTAI5tExampleKeyId01",
                                                  "access_key_secret": "example-secret-value",
                                                  "security_token": "sts-token"}}) + "\n")
    write("creds", "two", json.dumps({"prod": {"access_key_id": "LTAI5tProd000000000001",
                                               "access_key_secret": "prod-secret-0123456789"},
                                      "default": {"access_key_id": "short", "access_key_secret": "s"}}, indent=2))
    write("creds", "errors", json.dumps({"bad": {"access_key_id": "LTAI 5t/../x", "access_key_secret": 5,
                                                 "token": "x"}, "str": "nope"}))
    write("creds", "empty", "{}\n")


# ---------------------------------------------------------------- upstream
def upstream():
    def seed(name, status, body):
        write("upstream", name, struct.pack(">H", status) + (body.encode() if isinstance(body, str) else body))

    rid = "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"

    def err(code, msg="The specified parameter is invalid."):
        return cjson({"RequestId": rid, "HostId": "smc.aliyuncs.com", "Code": code, "Message": msg,
                      "Recommend": "https://api.aliyun.com/troubleshoot?q=" + code})

    seed("200-deleted", 200, cjson({"RequestId": rid}))
    seed("200-empty", 200, "")
    seed("200-code", 200, cjson({"RequestId": rid, "Code": "OK"}))
    seed("200-bad-rid", 200, cjson({"RequestId": "473469C7\r\nX-Injected: 1"}))
    seed("404-not-found", 404, err("InvalidJobId.NotFound", "The specified job does not exist."))
    seed("404-accesskey", 404, err("InvalidAccessKeyId.NotFound", "Specified access key is not found."))
    seed("409-invalid-status", 400, err("ReplicationJob.InvalidStatus", "The job is running.\u202e\x1b[31m"))
    seed("429-throttling", 400, err("Throttling.User", "Request was denied due to user flow control."))
    seed("403-signature", 400, err("SignatureDoesNotMatch"))
    seed("403-ram", 403, err("Forbidden.RAM"))
    seed("503-unavailable", 503, err("ServiceUnavailable"))
    seed("500-html", 500, "<html><body>502 Bad Gateway</body></html>")
    seed("200-dup", 200, '{"RequestId":"a","RequestId":"b"}')


# ---------------------------------------------------------------- auditline
def auditline():
    priv = ed25519.Ed25519PrivateKey.from_private_bytes(ED25519_SEED)
    spki = priv.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id = hashlib.sha256(spki).hexdigest()[:16]

    class Log:
        def __init__(self, instance="gw-1"):
            self.seq, self.prev, self.instance, self.since = 0, "0" * 64, instance, 0
            self.lines = []

        def add(self, members):
            self.seq += 1
            ts = "2026-11-28T12:%02d:%02d.%03dZ" % (self.seq // 60 % 60, self.seq % 60, self.seq % 1000)
            head = '{"seq":%d,"prev":"%s","ts":"%s","instance":%s' % (self.seq, self.prev, ts,
                                                                        json.dumps(self.instance))
            line = (head + members + "}\n").encode()
            self.prev = hashlib.sha256(line).hexdigest()
            self.lines.append(line)

        def entry(self, event, extra=""):
            self.add(',"event":"%s"%s' % (event, extra))
            self.since += 1

        def checkpoint(self):
            msg = "smc-gateway-audit-v1|%s|%d|%s" % (self.instance, self.seq + 1, self.prev)
            sig = base64.b64encode(priv.sign(msg.encode())).decode()
            self.add(',"event":"checkpoint","count":%d,"key_id":"%s","sig":"%s"' % (self.since, key_id, sig))
            self.since = 0

        def request(self, job="j-bp17m1vi6x21qhqk"):
            self.entry("decision", ',"request_id":"r-%d","client_ip":"10.0.0.7","method":"DELETE",'
                       '"path":"/jobs/%s","job_id":"%s","sub":"alice@example.com","team":"migration",'
                       '"decision":"allow","credential":"prod","access_key_id":"LTAI****ab12"' % (self.seq, job, job))
            self.entry("outcome", ',"request_id":"r-%d","client_ip":"10.0.0.7","method":"DELETE",'
                       '"path":"/jobs/%s","job_id":"%s","decision":"allow","status":200,"result":"deleted",'
                       '"upstream_status":200,"upstream_request_id":"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E",'
                       '"attempts":1,"duration_ms":41' % (self.seq, job, job))

    log = Log()
    log.request()
    log.entry("decision", ',"request_id":"r-x","client_ip":"10.0.0.9","method":"DELETE","path":"/jobs/x%1b",'
              '"job_id":null,"decision":"deny","reason":"bad_job_id","status":400,"result":"refused"')
    log.checkpoint()
    log.request("j-demo1")
    log.entry("refusals_suppressed", ',"client_ip":"10.0.0.9","count":42,"window_start":"2026-11-28T12:00:00.000Z"')
    log.checkpoint()
    good = b"".join(log.lines)
    write("auditline", "chain-signed", good)
    # The same chain as two rotated files.
    write("auditline", "two-files", b"".join(log.lines[:4]) + b"\x1e\n" + b"".join(log.lines[4:]))
    # A file that starts mid-chain (older files rotated away).
    write("auditline", "mid-chain", b"".join(log.lines[2:]))
    # Tampering: a changed line, a deleted line, reordered lines, a torn tail.
    changed = list(log.lines)
    changed[1] = changed[1].replace(b"10.0.0.7", b"10.0.0.8")
    write("auditline", "changed", b"".join(changed))
    write("auditline", "deleted", b"".join(log.lines[:2] + log.lines[3:]))
    write("auditline", "reordered", b"".join([log.lines[0], log.lines[2], log.lines[1]] + log.lines[3:]))
    write("auditline", "torn", good[:-20])
    forged = list(log.lines)
    # A well-formed signature that does not verify: one character changed.
    at = forged[3].index(b'"sig":"') + 17
    forged[3] = forged[3][:at] + (b"B" if forged[3][at:at + 1] != b"B" else b"C") + forged[3][at + 1:]
    write("auditline", "bad-sig", b"".join(forged))
    other = Log("gw-2")
    other.request()
    write("auditline", "mixed-instances", log.lines[0] + other.lines[1])
    write("auditline", "not-json", b'{"seq":1,"prev":"' + b"0" * 64 + b'",\x1b[2J\n')


# ---------------------------------------------------------------- jsonescape
def jsonescape():
    seeds = {
        "ascii": b"/jobs/j-bp17m1vi6x21qhqk?x=\"quoted\"\\back",
        "controls": bytes(range(0, 0x20)) + b"\x7f",
        "utf8": "caf\u00e9 \u65e5\u672c \U0001f600".encode(),
        "bidi": "\u202eevil\u2066\u2028\ufeff\u0085".encode(),
        "invalid": b"\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 \xff\xfe \x80",
        "empty": b"",
    }
    for k, v in seeds.items():
        write("jsonescape", k, v)


def main():
    for t in ("route", "http", "jwt", "jwks", "config", "policy", "creds", "upstream", "auditline", "jsonescape"):
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    route()
    http()
    jwt_seeds()
    jwks()
    config()
    policy()
    creds()
    upstream()
    auditline()
    jsonescape()


if __name__ == "__main__":
    main()
