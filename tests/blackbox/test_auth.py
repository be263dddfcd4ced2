"""Every way a token can be refused, and the ones that must be accepted.
Each refusal is checked for: 401, the WWW-Authenticate header, a problem body
that does not echo the token, nothing sent upstream, and an audit entry that
records no claim of the refused token."""
import base64
import hashlib
import hmac
import json
import os
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

import gwtest


def rs256(keys):
    return lambda data: keys.rsa.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256(secret):
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def claims_bytes(keys, **over):
    return json.dumps(keys.claims(**over)).encode()


def assert_refused(gw, sim, token, check, header=None):
    r = gw.delete("j-ok1", token, headers={"X-Request-Id": "rq-" + check.replace(":", "-")[:40]})
    assert r.status == 401, r
    if token is None:
        assert r.header("WWW-Authenticate") == "Bearer"
    else:
        assert r.header("WWW-Authenticate") == 'Bearer error="invalid_token"'
        assert token.encode() not in r.body
    p = r.json()
    assert r.header("Content-Type") == "application/problem+json"
    assert p["status"] == 401 and p["detail"]
    assert sim.requests() == []
    [e] = gw.audit_for(r.header("X-Request-Id"))
    assert e["decision"] == "deny" and e["status"] == 401
    assert e["reason"] == check, e
    assert "sub" not in e and "team" not in e and "jti" not in e
    return p


def test_no_token(gw, sim):
    assert_refused(gw, sim, None, "no_token")


def test_basic_auth_is_no_bearer_token(gw, sim):
    r = gwtest.request(gw.port, "DELETE", "/jobs/j-ok1", headers={"Authorization": "Basic YTpi"})
    assert r.status == 401 and r.header("WWW-Authenticate") == "Bearer"


@pytest.mark.parametrize("tok,why", [("garbage", "malformed"), ("a.b", "malformed"), ("a.b.c.d", "malformed"),
                                     ("...", "malformed"), ("eyJhbGciOiJSUzI1NiJ9.e30.", "malformed"),
                                     ("bm90IGpzb24.e30.c2ln", "bad_header")])
def test_garbage(gw, sim, tok, why):
    assert_refused(gw, sim, tok, "invalid_token:" + why)


def test_bad_signature(gw, sim, keys):
    assert_refused(gw, sim, keys.token(key=keys.rsa2), "invalid_token:bad_signature")


def test_expired(gw, sim, keys):
    assert_refused(gw, sim, keys.token(exp=int(time.time()) - 3600), "invalid_token:expired")


def test_not_yet_valid(gw, sim, keys):
    assert_refused(gw, sim, keys.token(nbf=int(time.time()) + 3600), "invalid_token:not_yet_valid")


def test_wrong_issuer(gw, sim, keys):
    assert_refused(gw, sim, keys.token(iss="https://evil.example.com"), "invalid_token:bad_issuer")


def test_wrong_audience(gw, sim, keys):
    assert_refused(gw, sim, keys.token(aud="another-api"), "invalid_token:bad_audience")


def test_missing_exp(gw, sim, keys):
    assert_refused(gw, sim, keys.token(exp=None), "invalid_token:bad_claims")


def test_alg_none(gw, sim, keys):
    tok = gwtest.b64url(b'{"alg":"none","typ":"JWT"}') + "." + gwtest.b64url(claims_bytes(keys)) + "."
    assert_refused(gw, sim, tok, "invalid_token:malformed")
    tok2 = gwtest.raw_token(b'{"alg":"none"}', claims_bytes(keys), lambda d: b"x")
    assert_refused(gw, sim, tok2, "invalid_token:alg_not_allowed")


def test_hs256_keyed_with_the_rsa_public_key(gw, sim, keys):
    tok = gwtest.raw_token(b'{"alg":"HS256","typ":"JWT"}', claims_bytes(keys), hs256(keys.rsa_pub_pem))
    assert_refused(gw, sim, tok, "invalid_token:alg_not_allowed")


def test_nbf_as_string(gw, sim, keys):
    tok = gwtest.raw_token(b'{"alg":"RS256"}', claims_bytes(keys, nbf=str(int(time.time()) - 10)), rs256(keys))
    assert_refused(gw, sim, tok, "invalid_token:bad_claims")


def test_exp_as_string(gw, sim, keys):
    tok = gwtest.raw_token(b'{"alg":"RS256"}', claims_bytes(keys, exp=str(int(time.time()) + 600)), rs256(keys))
    assert_refused(gw, sim, tok, "invalid_token:bad_claims")


def test_duplicate_claim_keys(gw, sim, keys):
    body = claims_bytes(keys)[:-1] + b',"sub":"admin@example.com"}'
    tok = gwtest.raw_token(b'{"alg":"RS256"}', body, rs256(keys))
    assert_refused(gw, sim, tok, "invalid_token:bad_claims")


def test_duplicate_header_keys(gw, sim, keys):
    tok = gwtest.raw_token(b'{"alg":"RS256","alg":"RS256"}', claims_bytes(keys), rs256(keys))
    assert_refused(gw, sim, tok, "invalid_token:bad_header")


def test_crit(gw, sim, keys):
    tok = gwtest.raw_token(b'{"alg":"RS256","crit":["exp"],"exp":1}', claims_bytes(keys), rs256(keys))
    assert_refused(gw, sim, tok, "invalid_token:crit_not_supported")


def test_lower_case_alg(gw, sim, keys):
    tok = gwtest.raw_token(b'{"alg":"rs256"}', claims_bytes(keys), rs256(keys))
    assert_refused(gw, sim, tok, "invalid_token:alg_not_allowed")


def test_unlisted_alg_even_with_valid_signature(gw, sim, keys):
    assert_refused(gw, sim, keys.token(alg="RS384"), "invalid_token:alg_not_allowed")


def test_typ_at_jwt_accepted(gw, sim, keys):
    r = gw.delete("j-ok1", keys.token(headers={"typ": "at+jwt"}))
    assert r.status == 200, r


def test_unknown_typ_refused(gw, sim, keys):
    assert_refused(gw, sim, keys.token(headers={"typ": "id_token"}), "invalid_token:typ_not_allowed")


def test_empty_sub_refused(gw, sim, keys):
    assert_refused(gw, sim, keys.token(sub=""), "invalid_token:bad_claims")


def test_aud_array_accepted(gw, sim, keys):
    r = gw.delete("j-ok1", keys.token(aud=["other", gwtest.AUDIENCE]))
    assert r.status == 200, r


def test_large_identity_provider_token_accepted(gw, sim, keys):
    groups = ["group-with-a-fairly-long-name-%04d" % i for i in range(300)]
    tok = keys.token(groups=groups)
    assert 10000 < len(tok) < 20000
    r = gw.delete("j-ok1", tok)
    assert r.status == 200, r


def test_es256_gateway(make_gateway, sim, keys):
    gw = make_gateway(sim.url, algorithms=("ES256",))
    assert gw.delete("j-ok1", keys.token(alg="ES256")).status == 200
    # An RS256 token is refused by an ES256 gateway.
    assert gw.delete("j-bp1ready", keys.token(alg="RS256")).status == 401


def test_hs256_gateway(make_gateway, sim, keys):
    gw = make_gateway(sim.url, algorithms=("HS256",))
    assert gw.delete("j-ok1", keys.token(alg="HS256")).status == 200
    r = gw.delete("j-bp1ready", gwtest.raw_token(b'{"alg":"HS256"}', claims_bytes(keys), hs256(b"")))
    assert r.status == 401
    assert len(sim.requests()) == 1


# Public keys no one holds the private half of, but with which anyone can make
# tokens: the gateway must refuse them at start-up, naming the file.

# The SPKI of the P-256 point at infinity (encoded as the single byte 0x00).
INFINITY_PEM = b"-----BEGIN PUBLIC KEY-----\nMBkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDAgAA\n-----END PUBLIC KEY-----\n"


def _der(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(nb)]) + nb
    return bytes([tag]) + head + body


def _der_int(v):
    b = v.to_bytes(v.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return _der(0x02, b)


def rsa_spki_pem(n, e):
    """An RSA public key PEM with any n and e (cryptography refuses e < 3)."""
    alg = bytes.fromhex("300d06092a864886f70d0101010500")
    spki = _der(0x30, alg + _der(0x03, b"\x00" + _der(0x30, _der_int(n) + _der_int(e))))
    b64 = base64.encodebytes(spki).decode().replace("\n", "")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n").encode()


def forge_rs256_e1(keys, kid=None, modlen=256):
    """With e = 1 the signature is the PKCS#1 v1.5 encoding of the digest."""
    hdr = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        hdr["kid"] = kid
    si = gwtest.b64url(json.dumps(hdr).encode()) + "." + gwtest.b64url(claims_bytes(keys))
    di = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(si.encode()).digest()
    return si + "." + gwtest.b64url(b"\x00\x01" + b"\xff" * (modlen - 3 - len(di)) + b"\x00" + di)


def _refused_at_start(sim, keys, workdir, name, pem, algorithms, why):
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        f.write(pem)
    g = gwtest.Gateway(workdir, keys, sim.url, algorithms=algorithms, key_file=path, start=False)
    rc, out = g.check_config()
    assert rc == 1 and path in out and why in out, out
    rc, out = g.run_expect_exit()
    assert rc == 1 and path in out and why in out, out


def test_key_file_ec_point_at_infinity_refused(sim, keys, workdir):
    _refused_at_start(sim, keys, workdir, "inf.pub.pem", INFINITY_PEM, ("ES256",), "point at infinity")


@pytest.mark.parametrize("e", [1, 3, 65536])
def test_key_file_rsa_weak_exponent_refused(sim, keys, workdir, e):
    n = keys.rsa.public_key().public_numbers().n
    _refused_at_start(sim, keys, workdir, "rsa-e%d.pub.pem" % e, rsa_spki_pem(n, e), ("RS256",), "public exponent")
