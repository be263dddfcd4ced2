"""Real identity providers: keys from a JWKS URL, selected by kid, refreshed
on rotation without refresh storms, and never taken from the token."""
import base64
import concurrent.futures
import http.server
import json
import os
import socket
import threading
import time
import uuid

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import gwtest
from test_auth import forge_rs256_e1
from test_ops import logged, sighup_and_wait, wait_until


def b64u_int(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def rsa_jwk(key, kid, **extra):
    pn = key.public_key().public_numbers()
    d = {"kty": "RSA", "kid": kid, "use": "sig", "n": b64u_int(pn.n), "e": b64u_int(pn.e)}
    d.update(extra)
    return d


def ec_jwk(key, kid, **extra):
    pn = key.public_key().public_numbers()
    d = {"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64u_int(pn.x, 32), "y": b64u_int(pn.y, 32)}
    d.update(extra)
    return d


class IdP:
    """A pretend identity provider serving /jwks.json; counts every fetch."""

    def __init__(self):
        self.r1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.r2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.r3 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.e1 = ec.generate_private_key(ec.SECP256R1())
        self.doc = {"keys": [rsa_jwk(self.r1, "r1"), rsa_jwk(self.r2, "r2"), ec_jwk(self.e1, "e1")]}
        self.down = False
        self.delay = 0.0
        self.hits = {}
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]  # a query (an API key, say) is allowed
                idp.hits[path] = idp.hits.get(path, 0) + 1
                time.sleep(idp.delay)
                if idp.down or path != "/jwks.json":
                    self.send_response(503 if idp.down else 404)
                    self.end_headers()
                    return
                body = json.dumps(idp.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/jwks.json" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fetches(self):
        return self.hits.get("/jwks.json", 0)

    def token(self, kid, key=None, alg="RS256", headers=None, **claims):
        keys = gwtest.Keys.__new__(gwtest.Keys)
        c = gwtest.Keys.claims(keys, **claims)
        h = dict(headers or {})
        if kid is not None:
            h["kid"] = kid
        if key is None:
            key = {"r1": self.r1, "r2": self.r2, "r3": self.r3, "e1": self.e1}.get(kid, self.r1)
        return pyjwt.encode(c, key, algorithm=alg, headers=h)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp():
    i = IdP()
    yield i
    i.stop()


def jwks_gateway(make_gateway, sim, idp, **auth):
    a = {"algorithms": ["RS256", "ES256"], "key_file": None, "jwks_url": idp.url}
    a.update(auth)
    return make_gateway(sim.url, config={"auth": a})


def metric(gw, name):
    text = gwtest.request(gw.port, "GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_each_kid_accepted(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    assert idp.fetches() == 1  # at start-up
    assert gw.delete("j-ok1", idp.token("r1")).status == 200
    assert gw.delete("j-bp1ready", idp.token("r2")).status == 200
    assert gw.delete("j-bp2abcdef", idp.token("e1", alg="ES256")).status == 200
    assert gw.delete("j-ok2", idp.token("r1", headers={"typ": "at+jwt"})).status == 404  # at+jwt accepted
    assert idp.fetches() == 1
    assert "3 usable keys" in gw.log()


def test_unknown_kid_is_401_after_at_most_one_refresh(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    t0 = time.time()
    r = gw.delete("j-ok1", idp.token("nobody", key=other))
    assert r.status == 401 and time.time() - t0 < 3
    assert "no verification key" in r.json()["detail"]
    assert idp.fetches() == 2
    assert sim.requests() == []


def test_rotation_mid_run(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    assert gw.delete("j-ok1", idp.token("r1")).status == 200
    idp.doc = {"keys": [rsa_jwk(idp.r3, "r3")]}
    # The first token with the new kid triggers one refresh and waits for it.
    assert gw.delete("j-bp2abcdef", idp.token("r3")).status == 200
    assert idp.fetches() == 2
    # The old key is gone from the set: its tokens are refused now.
    assert gw.delete("j-bp1ready", idp.token("r1")).status == 401


def test_junk_kids_cause_at_most_one_fetch(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = [idp.token("junk-%s" % uuid.uuid4().hex, key=other) for _ in range(1000)]
    before = idp.fetches()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        statuses = list(ex.map(lambda t: gw.delete("j-ok1", t).status, tokens))
    assert statuses == [401] * 1000
    assert idp.fetches() - before <= 1
    # Known keys were never disturbed.
    assert gw.delete("j-ok1", idp.token("r1")).status == 200


def test_idp_down_known_keys_keep_working(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    idp.down = True
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert gw.delete("j-ok1", idp.token("new-kid", key=other)).status == 401
    assert gw.delete("j-ok1", idp.token("r1")).status == 200
    assert metric(gw, "smc_gateway_jwks_refresh_failures_total") >= 1
    assert "refresh failed, keeping the last good key set" in gw.log()


def test_jwk_alg_pins_the_token_alg(make_gateway, sim, idp):
    idp.doc = {"keys": [rsa_jwk(idp.r1, "r1", alg="RS256"), ec_jwk(idp.e1, "e1", alg="ES256")]}
    gw = jwks_gateway(make_gateway, sim, idp)
    pem = idp.r1.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).Encoding.PEM,
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"]).PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    now = int(time.time())
    claims = {"sub": "a", "iss": gwtest.ISSUER, "aud": gwtest.AUDIENCE, "exp": now + 600, "team": "migration"}
    hs = gwtest.raw_token(b'{"alg":"HS256","kid":"r1"}', json.dumps(claims).encode(),
                          lambda d: hmac.new(pem, d, hashlib.sha256).digest())
    assert gw.delete("j-ok1", hs).status == 401
    # An RS256 token under the EC key's kid: the JWK's alg says ES256.
    assert gw.delete("j-ok1", idp.token("e1", key=idp.r1)).status == 401
    assert sim.requests() == []


def test_jku_is_never_fetched(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    evil = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tok = idp.token("evil", key=evil, headers={"jku": "http://127.0.0.1:%d/evil.json" % idp.port,
                                                "x5u": "http://127.0.0.1:%d/evil.pem" % idp.port})
    assert gw.delete("j-ok1", tok).status == 401
    assert idp.hits.get("/evil.json", 0) == 0 and idp.hits.get("/evil.pem", 0) == 0


def test_malformed_entries_skipped_not_fatal(make_gateway, sim, idp, keys):
    idp.doc = {"keys": [
        {"kty": "RSA", "kid": "bad-n", "n": "!!!", "e": "AQAB"},
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        rsa_jwk(idp.r2, "enc", use="enc"),
        {"kty": "EC", "kid": "bad-curve", "crv": "P-192", "x": "AA", "y": "AA"},
        "not-an-object",
        rsa_jwk(idp.r1, "r1"),
    ]}
    g = gwtest.Gateway(sim.folder, keys, sim.url, start=False,
                       config={"auth": {"algorithms": ["RS256"], "key_file": None, "jwks_url": idp.url}})
    rc, out = g.check_config()
    assert rc == 0, out
    assert "1 usable keys" in out
    for why in ['kid "bad-n": skipped', 'kid "sym": skipped', 'kid "enc": skipped: use is not "sig"',
                'kid "bad-curve": skipped', "key #4: skipped"]:
        assert why in out, out
    gw = jwks_gateway(make_gateway, sim, idp)
    assert gw.delete("j-ok1", idp.token("r1")).status == 200


def test_token_without_kid_needs_a_single_candidate(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    assert gw.delete("j-ok1", idp.token(None, key=idp.r1)).status == 401  # two RSA keys: ambiguous
    assert gw.delete("j-ok1", idp.token(None, key=idp.e1, alg="ES256")).status == 200  # one EC key


def test_nested_team_claim_with_prefix(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp, team_claim="realm_access.roles", team_prefix="smc-")
    tok = idp.token("r1", team=None, realm_access={"roles": ["offline_access", "smc-migration"]})
    r = gw.delete("j-ok1", tok)
    assert r.status == 200, r
    assert gw.audit_for(r.header("X-Request-Id"))[0]["team"] == "migration"


def test_start_refused_without_a_key_set(sim, idp, keys):
    idp.down = True
    g = gwtest.Gateway(sim.folder, keys, sim.url, start=False,
                       config={"auth": {"algorithms": ["RS256"], "key_file": None, "jwks_url": idp.url}})
    rc, out = g.run_expect_exit()
    assert rc == 1 and "auth.jwks_url: no usable key set" in out and "503" in out, out


def test_jwks_file(make_gateway, sim, idp, workdir):
    path = os.path.join(workdir, "jwks.json")
    with open(path, "w") as f:
        json.dump(idp.doc, f)
    gw = make_gateway(sim.url, config={"auth": {"algorithms": ["RS256", "ES256"], "key_file": None,
                                                "jwks_file": path}})
    assert gw.delete("j-ok1", idp.token("r2")).status == 200


def test_exactly_one_key_source(sim, idp, keys):
    g = gwtest.Gateway(sim.folder, keys, sim.url, start=False,
                       config={"auth": {"algorithms": ["RS256"], "jwks_url": idp.url}})
    rc, out = g.check_config()
    assert rc == 1 and "exactly one key source" in out


def test_bytes_arriving_while_a_request_waits_for_a_refresh(make_gateway, sim, idp):
    # A token with a new kid waits for a JWKS refresh; meanwhile the client
    # pipelines a large second request. The token is read again after the
    # refresh, from the connection's buffer: that buffer must not have moved
    # (it does not grow while a request is served).
    gw = jwks_gateway(make_gateway, sim, idp)
    idp.doc = {"keys": [rsa_jwk(idp.r3, "r3")]}
    idp.delay = 0.8
    tok = idp.token("r3")
    first = ("DELETE /jobs/j-bp2abcdef HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % tok).encode()
    second = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"q" * 12000 + b"\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(first)
        time.sleep(0.3)
        s.sendall(second)
        out = gwtest.read_until_closed(s)
    finally:
        s.close()
    assert out.startswith(b"HTTP/1.1 200 "), out[:300]
    assert out.count(b"HTTP/1.1 200 ") == 2, out[:600]
    assert [r["params"]["JobId"] for r in sim.requests()] == ["j-bp2abcdef"]


def test_jwk_with_exponent_1_skipped(make_gateway, sim, idp, keys):
    # Any n with e = 1: the "signature" is the padded digest, no key needed.
    weak = {"kty": "RSA", "kid": "weak", "use": "sig", "n": b64u_int(idp.r2.public_key().public_numbers().n),
            "e": "AQ"}
    idp.doc = {"keys": [weak, rsa_jwk(idp.r1, "r1")]}
    gw = jwks_gateway(make_gateway, sim, idp, algorithms=["RS256"])
    r = gw.delete("j-ok1", forge_rs256_e1(keys, kid="weak"))
    assert r.status == 401, r
    assert sim.requests() == []
    assert logged(gw, 'kid "weak": skipped: RSA key whose public exponent')
    assert gw.delete("j-ok1", idp.token("r1")).status == 200


def _switch_jwks(gw, **auth):
    gw.config["auth"].update(auth)
    gw.write_config()
    sighup_and_wait(gw, "configuration reloaded")


def test_reload_to_another_jwks_url_drops_the_old_keys(make_gateway, sim, idp):
    new = IdP()
    new.down = True  # the new IdP never answers
    try:
        gw = jwks_gateway(make_gateway, sim, idp)
        old_tok = idp.token("r1")
        assert gw.delete("j-ok1", old_tok).status == 200  # verified, and cached
        _switch_jwks(gw, jwks_url=new.url)
        # Neither the cached token nor fresh ones of the old IdP pass, with or
        # without a kid, however long the new URL stays down.
        assert gw.delete("j-bp1ready", old_tok).status == 401
        assert gw.delete("j-bp1ready", idp.token("r2")).status == 401
        assert gw.delete("j-bp1ready", idp.token(None, key=idp.e1, alg="ES256")).status == 401
        assert new.fetches() >= 1
        assert "JWKS %s: auth.jwks_url, jwks_ca_file or algorithms changed" % new.url in gw.log()
        assert "no key set: tokens are refused until a fetch succeeds" in gw.log()
        assert [r["params"]["JobId"] for r in sim.requests()] == ["j-ok1"]
    finally:
        new.stop()


def test_reload_to_another_jwks_url_waits_for_the_new_set(make_gateway, sim, idp):
    new = IdP()
    new.delay = 1.0
    try:
        gw = jwks_gateway(make_gateway, sim, idp)
        old_tok = idp.token("r1")
        assert gw.delete("j-ok1", old_tok).status == 200
        _switch_jwks(gw, jwks_url=new.url)
        # While the new set is on its way the old one is gone: the request
        # waits for the fetch, then is decided with the new IdP's keys.
        assert gw.delete("j-bp1ready", old_tok).status == 401
        assert gw.delete("j-bp1ready", new.token("r1")).status == 200
        assert gw.delete("j-bp2abcdef", idp.token("r2")).status == 401
    finally:
        new.stop()


def test_reload_changing_algorithms_refetches(make_gateway, sim, idp):
    gw = jwks_gateway(make_gateway, sim, idp)
    assert idp.fetches() == 1
    _switch_jwks(gw, algorithms=["RS256"])
    assert "auth.jwks_url, jwks_ca_file or algorithms changed" in gw.log()
    wait_until(lambda: idp.fetches() == 2, what="a fetch for the new algorithms")
    assert gw.delete("j-ok1", idp.token("r1")).status == 200
    assert gw.delete("j-bp1ready", idp.token("e1", alg="ES256")).status == 401


def test_jwks_url_credentials_not_logged(make_gateway, sim, idp):
    url = "http://alice:s3cret-pw@127.0.0.1:%d/jwks.json?api_key=K3Y-in-query" % idp.port
    shown = "http://127.0.0.1:%d/jwks.json" % idp.port
    gw = jwks_gateway(make_gateway, sim, idp, jwks_url=url)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert gw.delete("j-ok1", idp.token("unknown", key=other)).status == 401  # an early refresh
    wait_until(lambda: "JWKS %s: 3 usable keys" % shown in gw.log(), what="the refresh logged")
    _switch_jwks(gw, jwks_url=url.replace("K3Y-in-query", "K3Y-2") + "#frag")
    wait_until(lambda: len([l for l in gw.log().splitlines() if "JWKS %s: 3 usable keys" % shown in l]) == 2,
               what="the refresh after the reload logged")
    lines = [l for l in gw.log().splitlines() if "JWKS " in l]
    assert any("unknown kid" in l for l in lines) and any("changed" in l for l in lines), lines
    for l in lines:
        assert "s3cret" not in l and "alice" not in l and "K3Y" not in l and "frag" not in l, l
        assert shown in l, l


def test_jwks_url_credentials_not_in_the_startup_report(make_gateway, sim, idp):
    url = "http://alice:s3cret-pw@127.0.0.1:%d/jwks.json?api_key=K3Y-in-query" % idp.port
    gw = jwks_gateway(make_gateway, sim, idp, jwks_url=url)
    assert "s3cret" not in gw.log() and "K3Y" not in gw.log()
