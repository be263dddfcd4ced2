"""When the upstream may have acted on a call the gateway cannot see the answer
of: what reaches the upstream, what the caller is told, what the audit says.
A small HTTP/1.1 relay sits between the gateway and the simulator and
misbehaves the way load balancers do."""
import http.client
import json
import os
import socket
import ssl
import struct
import threading
import time
import urllib.parse

import gwtest


class Relay:
    """Keep-alive HTTP/1.1 relay to the simulator. `misbehave(n, status,
    data)` sees the simulator's answer to request n (1-based) and returns
    ("answer", status, data), or ("reset",) to abort the caller's connection
    with an RST instead of answering (the simulator did the work)."""

    def __init__(self, sim_port, misbehave):
        self.sim_port = sim_port
        self.misbehave = misbehave
        self.n = 0
        self.seen = []  # (n, form parameters) in arrival order
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.url = "http://127.0.0.1:%d/" % self.ls.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    c.close()
                    return
                buf += d
            head, rest = buf.split(b"\r\n\r\n", 1)
            fields = [l.split(":", 1) for l in head.decode().split("\r\n")[1:]]
            hdrs = {k.strip().lower(): v.strip() for k, v in fields}
            size = int(hdrs.get("content-length", "0"))
            while len(rest) < size:
                rest += c.recv(65536)
            body, buf = rest[:size], rest[size:]
            with self.lock:
                self.n += 1
                n = self.n
                self.seen.append((n, dict(urllib.parse.parse_qsl(body.decode()))))
            sc = http.client.HTTPConnection("127.0.0.1", self.sim_port, timeout=5)
            sc.request("POST", "/", body=body, headers={"Content-Type": hdrs.get("content-type", "")})
            r = sc.getresponse()
            data = r.read()
            sc.close()
            what = self.misbehave(n, r.status, data)
            if what[0] == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                return
            _, status, data = what
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (status, len(data)) + data)

    def sent_for(self, job):
        return [p for _, p in self.seen if p.get("JobId") == job]

    def stop(self):
        self.ls.close()


def test_a_reused_connection_that_breaks_after_sending_is_unknown_and_never_resent(make_gateway, sim, keys):
    # Request 2 goes out on the connection request 1 left open; the simulator
    # deletes the job, then the balancer resets the connection. curl would
    # resend the same signed request on a new connection by itself.
    relay = Relay(sim.port, lambda n, s, d: ("reset",) if n == 2 else ("answer", s, d))
    try:
        gw = make_gateway(relay.url)
        assert gw.delete("j-ok1", keys.token()).status == 200
        r = gw.delete("j-bp1ready", keys.token())
        assert r.status == 502, r
        assert r.json()["type"].endswith(":upstream-broken")
        sent = relay.sent_for("j-bp1ready")
        assert len(sent) == 1, sent  # one copy left, the one the audit counts
        assert "j-bp1ready" not in sim.jobs()
        o = gw.audit_for(r.header("X-Request-Id"))[-1]
        assert o["result"] == "unknown" and o["attempts"] == 1 and o["gateway_error"] == "connection_broken", o
        # The next call goes through on a fresh connection.
        assert gw.delete("j-bp2abcdef", keys.token()).status == 200
    finally:
        relay.stop()


def test_a_not_found_after_an_uncertain_5xx_is_unknown_not_refused(make_gateway, sim, keys):
    # The simulator deletes the job, the front end answers 504 without an
    # Alibaba body; the retry then finds the job gone.
    html = b"<html><body>504 Gateway Time-out</body></html>"
    relay = Relay(sim.port, lambda n, s, d: ("answer", 504, html) if n == 1 else ("answer", s, d))
    try:
        gw = make_gateway(relay.url)
        r = gw.delete("j-ok1", keys.token())
        assert r.status == 502, r
        body = r.json()
        assert body["type"].endswith(":upstream-ambiguous"), body
        assert body["upstream_code"] == "InvalidJobId.NotFound"
        assert "j-ok1" not in sim.jobs()
        o = gw.audit_for(r.header("X-Request-Id"))[-1]
        assert o["result"] == "unknown" and o["attempts"] == 2 and o["status"] == 502, o
    finally:
        relay.stop()


def test_a_used_nonce_is_unknown(make_gateway, sim, keys):
    # Something on the way resent the gateway's request: the simulator saw
    # the nonce already. Whether the first copy deleted the job is unknown.
    def first_copy_then_replay(n, s, d):
        if n == 1:
            params = relay.seen[0][1]
            c = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
            c.request("POST", "/", body=urllib.parse.urlencode(params),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
            again = c.getresponse()
            data = again.read()
            c.close()
            return ("answer", again.status, data)
        return ("answer", s, d)

    relay = Relay(sim.port, first_copy_then_replay)
    try:
        gw = make_gateway(relay.url)
        r = gw.delete("j-ok1", keys.token())
        assert r.status == 502, r
        assert r.json()["type"].endswith(":upstream-ambiguous")
        assert r.json()["upstream_code"] == "SignatureNonceUsed"
        o = gw.audit_for(r.header("X-Request-Id"))[-1]
        assert o["result"] == "unknown" and o["attempts"] == 1, o
    finally:
        relay.stop()


def test_throttling_backoff_waits_at_least_retry_after(make_gateway, keys):
    import http.server

    seen = []
    answers = [(400, {"Retry-After": "1"}, {"RequestId": "R-1", "Code": "Throttling.User"}),
               (200, {}, {"RequestId": "R-2"})]

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(time.monotonic())
            status, hdrs, obj = answers[min(len(seen), len(answers)) - 1]
            data = json.dumps(obj).encode()
            self.send_response(status)
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        gw = make_gateway("http://127.0.0.1:%d/" % srv.server_address[1])
        r = gw.delete("j-ok1", keys.token())
        assert r.status == 200, r
        # The first backoff step is 50-100 ms; Retry-After: 1 sets the floor.
        assert len(seen) == 2 and seen[1] - seen[0] >= 1.0, seen
    finally:
        srv.shutdown()


def test_the_upstream_message_is_never_logged(make_gateway, workdir, keys):
    # Alibaba's SignatureDoesNotMatch message quotes the string it signed,
    # AccessKeyId and SecurityToken included.
    token = "CAIS6AF1q6Ft5B2yfSjIr5DfLu7biatEgfaNSF7UsnEHT8NKmP3shDz2IH5PfXdsBuEYsfQynmBQ6"
    creds = {"prod": {"access_key_id": gwtest.ACCESS_KEY_ID, "access_key_secret": gwtest.ACCESS_KEY_SECRET,
                      "security_token": token}}
    cf = os.path.join(workdir, "sim-creds.json")
    with open(cf, "w") as f:
        json.dump(creds, f)
    os.chmod(cf, 0o600)
    sim = gwtest.Sim(workdir, jobs={"j-ok1": "Ready"}, credentials=cf)
    try:
        gw = make_gateway(sim.url, credentials=creds)
        signed = ("POST&%2F&AccessKeyId%3D" + gwtest.ACCESS_KEY_ID + "%26Action%3DDeleteReplicationJob"
                  "%26SecurityToken%3D" + token)
        sim.fault(mode="error", status=400, code="SignatureDoesNotMatch", count=1,
                  message="Specified signature is not matched with our calculation. server string to sign is:" + signed)
        r = gw.delete("j-ok1", keys.token())
        assert r.status == 502, r
        gw.stop()
        log = gw.log()
        line = [l for l in log.splitlines() if "SignatureDoesNotMatch" in l]
        assert line, log  # the code and request id are logged
        assert gwtest.ACCESS_KEY_ID not in log and token[:16] not in log and "string to sign" not in log
    finally:
        sim.stop()


class TLSRelay(Relay):
    """The Relay behind TLS: once `reset_after` requests have arrived, every
    new connection is reset before its handshake completes."""

    def __init__(self, sim_port, misbehave, folder, reset_after):
        import subprocess
        key, self.ca = os.path.join(folder, "relay.key"), os.path.join(folder, "relay.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", self.ca, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.ca, key)
        self.reset_after = reset_after
        super().__init__(sim_port, misbehave)
        self.url = self.url.replace("http://", "https://")

    def serve(self, c):
        if self.n >= self.reset_after:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            return
        try:
            c = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().serve(c)


def test_curls_resend_failing_its_tls_handshake_is_still_unknown(make_gateway, sim, keys, workdir):
    # As above, and curl's resend then meets a TLS handshake that fails:
    # the first copy left all the same, so this is not a clean "failed".
    relay = TLSRelay(sim.port, lambda n, s, d: ("reset",) if n == 2 else ("answer", s, d), workdir, reset_after=2)
    try:
        gw = make_gateway(relay.url, config={"workers": 1, "upstream": {"ca_file": relay.ca}})
        assert gw.delete("j-ok1", keys.token()).status == 200
        r = gw.delete("j-bp1ready", keys.token())
        assert r.status == 502, r
        assert r.json()["type"].endswith(":upstream-broken"), r.json()
        assert "j-bp1ready" not in sim.jobs()
        o = gw.audit_for(r.header("X-Request-Id"))[-1]
        assert o["result"] == "unknown" and o["attempts"] == 1 and o["gateway_error"] == "connection_broken", o
    finally:
        relay.stop()
