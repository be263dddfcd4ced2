"""TLS on the listener (server certificate, protocol floor, client
certificates and the policy's client_certs rule, reload on SIGHUP) and TLS
towards the upstream (upstream.ca_file, verification failures as 502 with a
gateway_error). Certificates come from certs/make-dev-certs.sh plus a few made
here with the openssl command line.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import gwtest

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_DEV_CERTS = os.path.join(HERE, "..", "..", "certs", "make-dev-certs.sh")

DEV_CLIENT_IDS = ["CN=dashboard-dev", "DNS:dash.localhost", "URI:spiffe://dev/dashboard"]


# --------------------------------------------------------------------------
# Certificates


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "openssl %s failed:\n%s%s" % (" ".join(args), p.stdout, p.stderr)
    return p.stdout


def make_ca(folder, name, cn):
    crt, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", crt, "-days", "30", "-subj", "/CN=" + cn,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    os.chmod(key, 0o600)
    return crt, key


def make_cert(folder, name, cn, san, eku, ca):
    """A leaf certificate signed by ca = (crt, key); san like 'DNS:a,URI:b' or None."""
    crt, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    csr, ext = os.path.join(folder, name + ".csr"), os.path.join(folder, name + ".ext")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=" + cn)
    with open(ext, "w") as f:
        if san:
            f.write("subjectAltName=%s\n" % san)
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % eku)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")), "-days", "30", "-extfile", ext, "-out", crt)
    os.remove(csr)
    os.remove(ext)
    os.chmod(key, 0o600)
    return crt, key


def make_self_signed(folder, name, cn, san):
    crt, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", crt, "-days", "30", "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san)
    os.chmod(key, 0o600)
    return crt, key


class PKI:
    def __init__(self, folder):
        self.dir = folder
        p = subprocess.run(["sh", MAKE_DEV_CERTS, folder], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        f = lambda n: os.path.join(folder, n)  # noqa: E731
        # From make-dev-certs.sh: CA-A and its localhost server certificate; the client CA and dashboard-dev.
        self.ca, self.ca_key = f("ca.crt"), f("ca.key")
        self.server = (f("server.crt"), f("server.key"))
        self.client_ca = f("client-ca.crt")
        self.client = (f("client.crt"), f("client.key"))
        # CA-B and a second localhost server certificate (wrong-CA and reload tests).
        self.ca_b = make_ca(folder, "ca-b", "test CA B")
        self.server_b = make_cert(folder, "server-b", "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth",
                                  self.ca_b)
        # A second client CA with a client certificate that claims the very same identities.
        self.client_ca2 = make_ca(folder, "client-ca2", "test client CA 2")
        self.client_foreign = make_cert(folder, "client-foreign", "dashboard-dev",
                                        "DNS:dash.localhost,URI:spiffe://dev/dashboard", "clientAuth",
                                        self.client_ca2)
        # Client certificates from the trusted client CA with other identities.
        cca = (self.client_ca, f("client-ca.key"))
        self.client_other = make_cert(folder, "client-other", "intruder", "DNS:other.localhost,URI:spiffe://dev/other",
                                      "clientAuth", cca)
        # The policy's DNS: name as a CN only: must not count as a DNS identity.
        self.client_cn_only = make_cert(folder, "client-cn-only", "dash.localhost", None, "clientAuth", cca)
        # Upstream certificates: self-signed (no CA the gateway trusts) and one for another host name.
        self.self_signed = make_self_signed(folder, "self-signed", "localhost", "DNS:localhost,IP:127.0.0.1")
        self.server_wrong_host = make_cert(folder, "server-wrong-host", "not-localhost.example",
                                           "DNS:not-localhost.example", "serverAuth", (self.ca, self.ca_key))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command line not installed")
    return PKI(str(tmp_path_factory.mktemp("pki")))


# --------------------------------------------------------------------------
# Clients


def client_ctx(cafile, cert=None, minv=None, maxv=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on
    ctx.load_verify_locations(cafile)
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if minv is not None:
        ctx.minimum_version = minv
    if maxv is not None:
        ctx.maximum_version = maxv
    return ctx


class TLSResponse(gwtest.Response):
    def __init__(self, status, headers, body, version, peer_der):
        super().__init__(status, headers, body)
        self.version = version
        self.peer_der = peer_der


def https(port, ctx, method="DELETE", path="/", headers=None, timeout=10):
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return TLSResponse(r.status, r.getheaders(), body, c.sock.version(), c.sock.getpeercert(binary_form=True))
    finally:
        c.close()


def delete(gw, ctx, job, token, request_id=None, headers=None):
    h = dict(headers or {})
    h["Authorization"] = "Bearer " + token
    if request_id is not None:
        h["X-Request-Id"] = request_id
    return https(gw.port, ctx, "DELETE", "/jobs/" + job, headers=h)


def expect_refused(gw, ctx, job, token):
    """The connection must fail in the handshake or close before any HTTP answer."""
    try:
        r = delete(gw, ctx, job, token)
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        return e
    pytest.fail("expected the TLS connection to be refused, got %r" % r)


def handshake(port, ctx):
    """Complete a handshake only; returns (protocol version, peer certificate DER)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.version(), s.getpeercert(binary_form=True)


def der(cert_file):
    with open(cert_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class TLSSimCtl:
    """The simulator's control API over HTTPS (gwtest.Sim.ctl speaks plain HTTP)."""

    def __init__(self, sim):
        self.port = sim.port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Only the test talks to /_sim/ here; what the gateway verifies is the point of the tests.
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE

    def ctl(self, method, path):
        r = https(self.port, self.ctx, method, "/_sim/" + path)
        assert r.status < 300, r
        return r.json()

    def requests(self):
        return self.ctl("GET", "requests")["requests"]

    def jobs(self):
        return self.ctl("GET", "jobs")["jobs"]


def tls_sim(folder, cert):
    return gwtest.Sim(folder, jobs={"j-ok1": "Ready", "j-bp1ready": "Ready"},
                      extra_args=["--tls-cert", cert[0], "--tls-key", cert[1]])


def tls_cfg(pki, cert=None, **over):
    cert = cert or pki.server
    t = {"cert_file": cert[0], "key_file": cert[1]}
    t.update(over)
    return t


def wait_log(gw, text, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if text in gw.log():
            return True
        time.sleep(0.05)
    return False


def assert_allowed_entries(gw, request_id, job, client_cert=None):
    entries = gw.audit_for(request_id)
    assert [e["event"] for e in entries] == ["decision", "outcome"], entries
    d, o = entries
    assert d["decision"] == "allow" and d["job_id"] == job and d["sub"] == "alice@example.com"
    assert o["status"] == 200 and o["result"] == "deleted" and o["upstream_status"] == 200
    for e in entries:
        if client_cert is None:
            assert "client_cert" not in e, e
        else:
            assert e["client_cert"] == client_cert, e
    return d, o


CERT_POLICY = {
    "teams": {
        "migration": dict(gwtest.DEFAULT_POLICY["teams"]["migration"]),
        "dashboard": {"credential": "prod", "allow": ["DeleteReplicationJob"],
                      "client_certs": ["CN=dashboard-prod", "DNS:dash.localhost", "URI:spiffe://corp/dashboard"]},
    }
}


# --------------------------------------------------------------------------
# 1, 2: server certificate


def test_https_delete_with_pinned_ca(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki)})
    r = delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token(), request_id="tls-ok-1")
    assert r.status == 200, r
    assert r.peer_der == der(pki.server[0])
    body = r.json()
    assert body["job_id"] == "j-bp1ready" and body["request_id"] == "tls-ok-1"
    assert re.fullmatch(r"[0-9A-F-]{36}", body["upstream_request_id"])
    assert r.header("X-Request-Id") == "tls-ok-1"

    reqs = sim.requests()
    assert len(reqs) == 1
    assert reqs[0]["signature_valid"] is True and reqs[0]["status"] == 200
    assert reqs[0]["params"]["JobId"] == "j-bp1ready"
    assert reqs[0]["params"]["AccessKeyId"] == gwtest.ACCESS_KEY_ID
    assert "j-bp1ready" not in sim.jobs()

    d, o = assert_allowed_entries(gw, "tls-ok-1", "j-bp1ready")
    assert o["upstream_request_id"] == body["upstream_request_id"]
    # No client CA configured: no client certificate asked for or recorded.


def test_client_trusting_another_ca_refuses_the_gateway(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki)})
    with pytest.raises(ssl.SSLCertVerificationError):
        delete(gw, client_ctx(pki.ca_b[0]), "j-bp1ready", keys.token())
    assert sim.requests() == []
    assert "j-bp1ready" in sim.jobs()
    assert [e for e in gw.audit() if e.get("job_id") == "j-bp1ready"] == []
    # The same gateway with the right CA works (the refusal was the client's verification).
    assert delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token()).status == 200


# --------------------------------------------------------------------------
# 3, 4: client certificates required


def test_mtls_required_without_client_cert_fails_then_good_client_works(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, client_ca_file=pki.client_ca)})
    expect_refused(gw, client_ctx(pki.ca), "j-bp1ready", keys.token())
    assert sim.requests() == []
    assert "j-bp1ready" in sim.jobs()
    assert [e for e in gw.audit() if e.get("job_id") == "j-bp1ready"] == []

    r = delete(gw, client_ctx(pki.ca, cert=pki.client), "j-bp1ready", keys.token(), request_id="mtls-good")
    assert r.status == 200, r
    assert len(sim.requests()) == 1 and sim.requests()[0]["signature_valid"] is True
    assert_allowed_entries(gw, "mtls-good", "j-bp1ready", client_cert=DEV_CLIENT_IDS)


def test_mtls_client_cert_from_another_ca_fails(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, client_ca_file=pki.client_ca, client_auth="required")})
    # Same subject and SANs as the good certificate, but issued by an untrusted CA.
    expect_refused(gw, client_ctx(pki.ca, cert=pki.client_foreign), "j-bp1ready", keys.token())
    assert sim.requests() == []
    assert "j-bp1ready" in sim.jobs()
    assert [e for e in gw.audit() if e.get("job_id") == "j-bp1ready"] == []
    assert delete(gw, client_ctx(pki.ca, cert=pki.client), "j-bp1ready", keys.token()).status == 200


# --------------------------------------------------------------------------
# 5: the policy's client_certs


@pytest.mark.parametrize("client_auth", ["required", "optional"])
def test_team_client_certs_other_certificate_is_403(make_gateway, sim, keys, pki, client_auth):
    gw = make_gateway(sim.url, policy=CERT_POLICY,
                      config={"tls": tls_cfg(pki, client_ca_file=pki.client_ca, client_auth=client_auth)})
    token = keys.token(team="dashboard")
    other_ids = ["CN=intruder", "DNS:other.localhost", "URI:spiffe://dev/other"]
    cases = [("cc-other", pki.client_other, other_ids),
             # CN "dash.localhost" is not the identity DNS:dash.localhost.
             ("cc-cn-only", pki.client_cn_only, ["CN=dash.localhost"])]
    if client_auth == "optional":
        cases.append(("cc-none", None, None))
    for rid, cert, ids in cases:
        r = delete(gw, client_ctx(pki.ca, cert=cert), "j-bp1ready", token, request_id=rid)
        assert r.status == 403, (rid, r)
        assert r.header("Content-Type") == "application/problem+json"
        p = r.json()
        assert p["status"] == 403 and p["request_id"] == rid
        entries = gw.audit_for(rid)
        assert len(entries) == 1, entries
        e = entries[0]
        assert e["event"] == "decision" and e["decision"] == "deny", e
        assert e["reason"] == "client_cert_required" and e["status"] == 403 and e["result"] == "refused", e
        assert e["team"] == "dashboard"
        if ids is None:
            assert "client_cert" not in e, e
        else:
            assert e["client_cert"] == ids, e
    assert sim.requests() == []
    assert "j-bp1ready" in sim.jobs()

    r = delete(gw, client_ctx(pki.ca, cert=pki.client), "j-bp1ready", token, request_id="cc-match")
    assert r.status == 200, r
    assert r.json()["job_id"] == "j-bp1ready"
    reqs = sim.requests()
    assert len(reqs) == 1 and reqs[0]["signature_valid"] is True and reqs[0]["params"]["JobId"] == "j-bp1ready"
    d, _ = assert_allowed_entries(gw, "cc-match", "j-bp1ready", client_cert=DEV_CLIENT_IDS)
    assert d["team"] == "dashboard"


def test_team_client_certs_over_plain_http_is_403(make_gateway, sim, keys, pki):
    """A team bound to client certificates cannot be used on a gateway without TLS."""
    gw = make_gateway(sim.url, policy=CERT_POLICY)
    r = gw.delete("j-bp1ready", keys.token(team="dashboard"), headers={"X-Request-Id": "cc-plain"})
    assert r.status == 403, r
    e = gw.audit_for("cc-plain")[0]
    assert e["reason"] == "client_cert_required" and "client_cert" not in e
    assert sim.requests() == []
    # Teams without client_certs are unaffected.
    assert gw.delete("j-bp1ready", keys.token()).status == 200


# --------------------------------------------------------------------------
# 6: protocol versions


def s_client(port, *args):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"]
                       + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    return p.stdout + p.stderr


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_versions_refused(make_gateway, sim, pki, flag):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki)})
    out = s_client(gw.port, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "Cipher is (NONE)" in out, out
    # Control: the same tool with TLS 1.2 negotiates a cipher.
    out = s_client(gw.port, "-tls1_2")
    assert "Cipher is (NONE)" not in out and re.search(r"Cipher is ECDHE-", out), out
    assert gw.proc.poll() is None


def test_tls12_and_tls13_accepted(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki)})
    r = delete(gw, client_ctx(pki.ca, maxv=ssl.TLSVersion.TLSv1_2), "j-bp1ready", keys.token())
    assert r.status == 200 and r.version == "TLSv1.2", (r, r.version)
    r = delete(gw, client_ctx(pki.ca, minv=ssl.TLSVersion.TLSv1_3), "j-ok1", keys.token())
    assert r.status == 200 and r.version == "TLSv1.3", (r, r.version)
    assert len(sim.requests()) == 2


def test_tls12_ciphers_are_ecdhe_aead_only(make_gateway, sim, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki)})
    out = s_client(gw.port, "-tls1_2", "-cipher", "AES128-SHA:AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA")
    assert "Cipher is (NONE)" in out, out
    ctx = client_ctx(pki.ca, maxv=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            name = s.cipher()[0]
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


def test_min_version_13_refuses_tls12_client(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, min_version="1.3")})
    expect_refused(gw, client_ctx(pki.ca, maxv=ssl.TLSVersion.TLSv1_2), "j-bp1ready", keys.token())
    assert sim.requests() == []
    out = s_client(gw.port, "-tls1_2")
    assert "Cipher is (NONE)" in out, out
    r = delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token())
    assert r.status == 200 and r.version == "TLSv1.3", (r, r.version)
    assert len(sim.requests()) == 1


# --------------------------------------------------------------------------
# 7: client certificates optional


def test_optional_client_auth_with_and_without_certificate(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, client_ca_file=pki.client_ca, client_auth="optional")})
    r = delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token(), request_id="opt-none")
    assert r.status == 200, r
    assert_allowed_entries(gw, "opt-none", "j-bp1ready", client_cert=None)

    r = delete(gw, client_ctx(pki.ca, cert=pki.client), "j-ok1", keys.token(), request_id="opt-cert")
    assert r.status == 200, r
    assert_allowed_entries(gw, "opt-cert", "j-ok1", client_cert=DEV_CLIENT_IDS)
    assert [q["params"]["JobId"] for q in sim.requests()] == ["j-bp1ready", "j-ok1"]


def test_optional_client_auth_still_verifies_a_presented_certificate(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, client_ca_file=pki.client_ca, client_auth="optional")})
    # Same identities as the good certificate, from an untrusted CA: refused, not ignored.
    expect_refused(gw, client_ctx(pki.ca, cert=pki.client_foreign), "j-bp1ready", keys.token())
    assert sim.requests() == []
    assert [e for e in gw.audit() if e.get("job_id") == "j-bp1ready"] == []
    assert delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token()).status == 200


# --------------------------------------------------------------------------
# 8: reload


def install_cert(folder, cert):
    crt, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
    shutil.copyfile(cert[0], crt)
    shutil.copyfile(cert[1], key)
    os.chmod(key, 0o600)
    return crt, key


def test_sighup_reloads_the_server_certificate(make_gateway, sim, keys, pki, workdir):
    live = install_cert(workdir, pki.server)
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, cert=live)})
    ctx_a, ctx_b = client_ctx(pki.ca), client_ctx(pki.ca_b[0])
    assert handshake(gw.port, ctx_a)[1] == der(pki.server[0])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(gw.port, ctx_b)

    install_cert(workdir, pki.server_b)
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_log(gw, "configuration reloaded"), gw.log()

    assert handshake(gw.port, ctx_b)[1] == der(pki.server_b[0])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(gw.port, ctx_a)
    r = delete(gw, ctx_b, "j-bp1ready", keys.token(), request_id="after-reload")
    assert r.status == 200 and r.peer_der == der(pki.server_b[0]), r
    assert sim.requests()[0]["signature_valid"] is True
    assert_allowed_entries(gw, "after-reload", "j-bp1ready")


def test_sighup_with_mismatched_key_keeps_the_old_certificate(make_gateway, sim, keys, pki, workdir):
    live = install_cert(workdir, pki.server)
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, cert=live)})
    shutil.copyfile(pki.server_b[0], live[0])  # new certificate, old key: does not match
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_log(gw, "reload refused"), gw.log()
    assert "configuration reloaded" not in gw.log()
    assert gw.proc.poll() is None
    r = delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token())
    assert r.status == 200 and r.peer_der == der(pki.server[0]), r


# --------------------------------------------------------------------------
# 9: plaintext to the TLS port


def test_plaintext_http_to_tls_port_is_closed(make_gateway, sim, keys, pki):
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki)})
    req = ("DELETE /jobs/j-bp1ready HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
           "Content-Length: 0\r\n\r\n" % keys.token()).encode()
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    out, closed = b"", False
    try:
        s.sendall(req)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    except socket.timeout:
        pass
    finally:
        s.close()
    assert closed, "the gateway kept the plaintext connection open; got %r" % out
    assert not out.startswith(b"HTTP/"), out
    assert sim.requests() == []
    assert "j-bp1ready" in sim.jobs()
    assert [e for e in gw.audit() if e.get("job_id") == "j-bp1ready"] == []
    assert gw.proc.poll() is None
    r = delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token())
    assert r.status == 200, r


# --------------------------------------------------------------------------
# 10, 11: TLS towards the upstream


def assert_upstream_tls_failure(gw, r, rid, exact=None):
    assert r.status == 502, r
    assert r.header("Content-Type") == "application/problem+json"
    p = r.json()
    assert p["status"] == 502 and p["request_id"] == rid
    assert p["gateway_error"].startswith("tls_"), p
    if exact is not None:
        assert p["gateway_error"] == exact, p
    assert "upstream_code" not in p and "upstream_request_id" not in p, p
    entries = gw.audit_for(rid)
    assert [e["event"] for e in entries] == ["decision", "outcome"], entries
    o = entries[1]
    assert o["status"] == 502 and o["result"] == "failed", o
    assert o["gateway_error"] == p["gateway_error"], o
    assert "upstream_code" not in o and "upstream_status" not in o, o


def test_upstream_with_untrusted_certificate_is_502_tls_verify_failed(make_gateway, workdir, keys, pki):
    s = tls_sim(workdir, pki.self_signed)
    try:
        gw = make_gateway("https://localhost:%d/" % s.port, config={"upstream": {"ca_file": pki.ca}})
        r = gw.delete("j-ok1", keys.token(), headers={"X-Request-Id": "up-untrusted"})
        assert_upstream_tls_failure(gw, r, "up-untrusted", exact="tls_verify_failed")
        ctl = TLSSimCtl(s)
        assert ctl.requests() == []
        assert "j-ok1" in ctl.jobs()
    finally:
        s.stop()


def test_upstream_certificate_for_another_host_is_502(make_gateway, workdir, keys, pki):
    """Host verification is on: a certificate from the trusted CA for another name fails."""
    s = tls_sim(workdir, pki.server_wrong_host)
    try:
        gw = make_gateway("https://localhost:%d/" % s.port, config={"upstream": {"ca_file": pki.ca}})
        r = gw.delete("j-ok1", keys.token(), headers={"X-Request-Id": "up-wronghost"})
        assert_upstream_tls_failure(gw, r, "up-wronghost")
        ctl = TLSSimCtl(s)
        assert ctl.requests() == []
        assert "j-ok1" in ctl.jobs()
    finally:
        s.stop()


def test_upstream_over_tls_with_pinned_ca(make_gateway, workdir, keys, pki):
    s = tls_sim(workdir, pki.server)
    try:
        gw = make_gateway("https://localhost:%d/" % s.port, config={"upstream": {"ca_file": pki.ca}})
        r = gw.delete("j-ok1", keys.token(), headers={"X-Request-Id": "up-tls-ok"})
        assert r.status == 200, (r, gw.log())
        body = r.json()
        assert body["job_id"] == "j-ok1"
        ctl = TLSSimCtl(s)
        reqs = ctl.requests()
        assert len(reqs) == 1
        assert reqs[0]["signature_valid"] is True and reqs[0]["params"]["JobId"] == "j-ok1"
        assert "j-ok1" not in ctl.jobs()
        _, o = assert_allowed_entries(gw, "up-tls-ok", "j-ok1")
        assert o["upstream_request_id"] == body["upstream_request_id"]
        assert "gateway_error" not in o
    finally:
        s.stop()


def test_both_sides_tls_with_mtls(make_gateway, workdir, keys, pki):
    """Listener with client certificates and the upstream over TLS at the same time."""
    s = tls_sim(workdir, pki.server)
    try:
        gw = make_gateway("https://localhost:%d/" % s.port, policy=CERT_POLICY,
                          config={"upstream": {"ca_file": pki.ca},
                                  "tls": tls_cfg(pki, client_ca_file=pki.client_ca)})
        r = delete(gw, client_ctx(pki.ca, cert=pki.client), "j-ok1", keys.token(team="dashboard"),
                   request_id="both-tls")
        assert r.status == 200, (r, gw.log())
        assert TLSSimCtl(s).requests()[0]["signature_valid"] is True
        assert_allowed_entries(gw, "both-tls", "j-ok1", client_cert=DEV_CLIENT_IDS)
    finally:
        s.stop()


# --------------------------------------------------------------------------
# 12: key file modes


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660], ids=lambda m: "%04o" % m)
def test_tls_key_with_loose_mode_is_refused(make_gateway, sim, pki, workdir, mode):
    crt, key = install_cert(workdir, pki.server)
    os.chmod(key, mode)
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, cert=(crt, key))}, start=False)
    rc, out = gw.check_config()
    assert rc == 1, out
    assert key in out, out
    rc, out = gw.run_expect_exit()
    assert rc != 0, out
    assert key in out, out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()


def test_tls_key_mode_0640_is_accepted(make_gateway, sim, keys, pki, workdir):
    crt, key = install_cert(workdir, pki.server)
    os.chmod(key, 0o640)
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki, cert=(crt, key))}, start=False)
    rc, out = gw.check_config()
    assert rc == 0, out
    gw.start()
    r = delete(gw, client_ctx(pki.ca), "j-bp1ready", keys.token())
    assert r.status == 200, r
    assert len(sim.requests()) == 1


def tls_socket(port, ctx):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def test_broken_tls_record_while_a_request_is_served(make_gateway, sim, keys, pki):
    # A request waits for a slow upstream; meanwhile the client sends a TLS
    # record that is not one (a fatal error for the stream). The request still
    # completes (upstream called once, outcome audited), the connection goes,
    # and the gateway serves the next caller.
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki), "workers": 1})
    sim.fault(latency_ms=500)
    s = tls_socket(gw.port, client_ctx(pki.ca))
    try:
        s.sendall(b"DELETE /jobs/j-bp1ready HTTP/1.1\r\nHost: x\r\nX-Request-Id: tls-broken-1\r\n"
                  b"Authorization: Bearer " + keys.token().encode() + b"\r\n\r\n")
        time.sleep(0.1)
        os.write(s.fileno(), b"\x17\x03\x03\x00\x20" + b"\xaa" * 32)
        gwtest.read_until_closed(s, 3.0, OSError)
    finally:
        s.close()
    entries = gw.audit_for("tls-broken-1", wait=3.0)
    assert [e["event"] for e in entries] == ["decision", "outcome"], entries
    assert entries[1]["status"] == 200
    assert [r["params"]["JobId"] for r in sim.requests()] == ["j-bp1ready"]
    sim.fault(latency_ms=0)
    assert delete(gw, client_ctx(pki.ca), "j-ok1", keys.token()).status == 200


def test_tls_pipelined_heads_beyond_one_buffer_are_all_answered(make_gateway, sim, keys, pki):
    # More pipelined heads than the connection's buffer holds: what OpenSSL
    # still holds after the buffer filled must be read without a new poll
    # event (the socket is already empty).
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki), "workers": 1})
    n = 60
    pad = b"X-Pad: " + b"p" * 600 + b"\r\n"
    reqs = b"".join(b"GET /nothing-%d HTTP/1.1\r\nHost: x\r\n" % i + pad + b"\r\n" for i in range(n - 1))
    reqs += b"GET /nothing-last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert len(reqs) > 32 * 1024
    s = tls_socket(gw.port, client_ctx(pki.ca))
    try:
        s.sendall(reqs)
        out = gwtest.read_until_closed(s, 8.0, OSError)
    finally:
        s.close()
    assert out.count(b"HTTP/1.1 404 ") == n, out.count(b"HTTP/1.1 404 ")


def test_upstream_by_host_name_leaves_no_stale_watch(make_gateway, workdir, keys, pki):
    # A host name (not localhost, which curl answers itself) makes curl
    # resolve it on a thread, watched through a socketpair that curl closes by
    # itself. No watch on that closed descriptor may survive: the next
    # connection accepted often gets its number and must still be served.
    name = socket.gethostname()
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}
    except socket.gaierror:
        addrs = set()
    if addrs != {"127.0.0.1"} or name == "localhost":
        pytest.skip("the host name %r does not resolve to 127.0.0.1 only" % name)
    cert = make_cert(workdir, "upstream-by-name", name, "DNS:" + name, "serverAuth", (pki.ca, pki.ca_key))
    s = tls_sim(workdir, cert)
    try:
        gw = make_gateway("https://%s:%d/" % (name, s.port), config={"upstream": {"ca_file": pki.ca}, "workers": 1})
        assert gw.delete("j-ok1", keys.token()).status == 200
        for job in ("j-bp1ready", "j-oknone1", "j-oknone2"):
            t0 = time.time()
            r = gw.delete(job, keys.token(), timeout=5)
            assert r.status in (200, 404) and time.time() - t0 < 2, (job, r)
    finally:
        s.stop()


def test_half_a_tls_record_waits_quietly(make_gateway, sim, keys, pki):
    # A client sends the first half of a TLS record (bytes OpenSSL buffers
    # but cannot decrypt yet): the gateway waits for the rest without
    # spinning, and answers once it comes.
    gw = make_gateway(sim.url, config={"tls": tls_cfg(pki), "workers": 1})
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx(pki.ca).wrap_bio(inc, out, server_hostname="localhost")
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(out.read())
                inc.write(raw.recv(65536))
        raw.sendall(out.read())
        tls.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        record = out.read()
        raw.sendall(record[:len(record) // 2])
        before = gwtest.cpu_seconds(gw.proc.pid)
        time.sleep(1.0)
        assert gwtest.cpu_seconds(gw.proc.pid) - before < 0.3
        raw.sendall(record[len(record) // 2:])
        got = b""
        while b'{"status":"alive"}' not in got:
            data = raw.recv(65536)
            assert data, got
            inc.write(data)
            try:
                got += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        assert got.startswith(b"HTTP/1.1 200 ")
    finally:
        raw.close()
