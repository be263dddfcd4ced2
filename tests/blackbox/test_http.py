"""The HTTP/1.1 layer: every refusal is a problem body, framing is never
ambiguous, keep-alive and pipelining work, and nothing malformed reaches the
upstream."""
import json
import os
import socket
import subprocess
import time

import gwtest


def split_responses(out):
    """Raw bytes of one or more responses -> [(status, {header: value}, body)]."""
    found = []
    while out:
        head, sep, rest = out.partition(b"\r\n\r\n")
        assert sep, out[:200]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        n = int(headers.get("content-length", "0"))
        found.append((status, headers, rest[:n]))
        out = rest[n:]
    return found


def delete_head(tok, job="j-ok1", extra=b""):
    return (b"DELETE /jobs/" + job.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok.encode() +
            b"\r\n" + extra + b"\r\n")


def assert_problem(resp, status, slug):
    st, headers, body = resp
    assert st == status, (st, body)
    assert headers["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == status and doc["type"] == "urn:smc-gateway:problem:" + slug
    assert doc["request_id"] == headers["x-request-id"]
    return headers


def test_oversized_head_is_431_problem_and_closes(gw, sim, keys):
    out = gwtest.raw_request(gw.port, delete_head(keys.token(), extra=b"X-Pad: " + b"a" * 40000 + b"\r\n"))
    [resp] = split_responses(out)
    headers = assert_problem(resp, 431, "request-head-too-large")
    assert headers["connection"] == "close"
    assert sim.requests() == []


def test_too_many_fields_is_431(gw, sim, keys):
    extra = b"".join(b"X-F%d: v\r\n" % i for i in range(120))
    [resp] = split_responses(gwtest.raw_request(gw.port, delete_head(keys.token(), extra=extra)))
    assert_problem(resp, 431, "request-head-too-large")
    assert sim.requests() == []


def test_ambiguous_heads_are_400_problem_and_never_forwarded(gw, sim, keys):
    tok = keys.token()
    for extra in (b"X-A: 1\r\n folded: continuation\r\n",  # obs-fold
                  b"Authorization : Bearer " + tok.encode() + b"\r\n",  # space before the colon
                  b"X-A: a\rb\r\n",  # bare CR
                  b"Host: y\r\n"):  # a second Host
        out = gwtest.raw_request(gw.port, delete_head(tok, extra=extra))
        [resp] = split_responses(out)
        headers = assert_problem(resp, 400, "bad-request")
        assert headers["connection"] == "close"
    assert sim.requests() == []
    assert gw.audit() == []


def test_http11_without_host_is_400(gw, sim, keys):
    out = gwtest.raw_request(gw.port, b"DELETE /jobs/j-ok1 HTTP/1.1\r\nAuthorization: Bearer " +
                             keys.token().encode() + b"\r\n\r\n")
    assert_problem(split_responses(out)[0], 400, "bad-request")
    assert sim.requests() == []


def test_other_http_versions_are_505(gw, sim):
    out = gwtest.raw_request(gw.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert_problem(split_responses(out)[0], 505, "http-version-not-supported")
    out = gwtest.raw_request(gw.port, b"DELETE /jobs/j-ok1 HTTP/1.2\r\nHost: x\r\n\r\n")
    assert_problem(split_responses(out)[0], 505, "http-version-not-supported")
    assert sim.requests() == []


def test_body_over_max_body_bytes_is_413(gw, sim, keys):
    out = gwtest.raw_request(gw.port, delete_head(keys.token(), extra=b"Content-Length: 100000\r\n"))
    headers = assert_problem(split_responses(out)[0], 413, "content-too-large")
    assert headers["connection"] == "close"
    assert sim.requests() == []


def test_pipelined_requests_are_answered_in_order(gw, sim, keys):
    tok = keys.token()
    reqs = (delete_head(tok, "j-ok1", b"X-Request-Id: first\r\n") +
            delete_head(tok, "j-oknope1", b"X-Request-Id: second\r\n") +
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: third\r\nConnection: close\r\n\r\n")
    out = gwtest.raw_request(gw.port, reqs)
    got = split_responses(out)
    assert [(st, h["x-request-id"]) for st, h, _ in got] == [(200, "first"), (404, "second"), (200, "third")]
    assert json.loads(got[0][2])["job_id"] == "j-ok1"
    assert got[2][1]["connection"] == "close"
    assert [r["params"]["JobId"] for r in sim.requests()] == ["j-ok1", "j-oknope1"]


def test_keep_alive_serves_many_requests_on_one_connection(gw, sim, keys):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        for i in range(5):
            s.sendall(delete_head(keys.token(), "j-oknope%d" % i))
            buf = b""
            while b"\r\n\r\n" not in buf or len(split_responses(buf)[0][2]) < int(
                    split_responses(buf)[0][1].get("content-length", "0")):
                chunk = s.recv(65536)
                assert chunk, "closed after %d requests" % i
                buf += chunk
            [(st, headers, _)] = split_responses(buf)
            assert st == 404 and "connection" not in headers
    finally:
        s.close()
    assert len(sim.requests()) == 5


def test_http10_keep_alive_is_honoured(gw, sim):
    out = gwtest.raw_request(gw.port, b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                             b"GET /healthz HTTP/1.0\r\n\r\n")
    first, second = split_responses(out)
    assert first[0] == 200 and first[1]["connection"] == "keep-alive"
    assert second[0] == 200 and second[1]["connection"] == "close"


def test_head_has_no_body(gw):
    out = gwtest.raw_request(gw.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
    head1, _, rest = out.partition(b"\r\n\r\n")
    assert head1.startswith(b"HTTP/1.1 200") and b"Content-Length: 18" in head1
    # The next bytes are the second response, not a body of the first.
    assert rest.startswith(b"HTTP/1.1 200"), rest[:100]
    assert rest.endswith(b'{"status":"alive"}')


def test_every_reply_has_a_date(gw, sim, keys):
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 200 and r.header("Date").endswith(" GMT")


def test_out_of_descriptors_pauses_accepting_instead_of_spinning(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config={"workers": 1})
    pid = gw.proc.pid
    open_now = len(os.listdir("/proc/%d/fd" % pid))
    soft, hard = subprocess.run(["prlimit", "--pid", str(pid), "--nofile", "--raw", "--noheadings", "-o", "SOFT,HARD"],
                                check=True, capture_output=True, text=True).stdout.split()
    # Room for a handful of connections more (the soft limit only: lowering
    # the hard one could not be undone), then accept() fails with EMFILE.
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%s" % (open_now + 4, hard)], check=True)
    socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(12)]
    try:
        time.sleep(0.3)
        before = gwtest.cpu_seconds(pid)
        time.sleep(1.5)
        # A listener spinning on a readable socket it cannot accept from would burn the core.
        assert gwtest.cpu_seconds(pid) - before < 0.5
        assert "accept failed" in gw.log()
    finally:
        for s in socks:
            s.close()
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%s:%s" % (soft, hard)], check=True)
    # Once descriptors are free again, callers get through.
    deadline = time.time() + 5
    while True:
        try:
            r = gw.delete("j-ok1", keys.token(), timeout=2)
            break
        except OSError:
            assert time.time() < deadline
            time.sleep(0.1)
    assert r.status == 200


def test_generated_request_ids_are_prefix_and_counter(make_gateway, sim, keys):
    import re
    gw = make_gateway(sim.url, config={"workers": 1})
    ids = [gw.delete("j-oknope%d" % i, keys.token()).header("X-Request-Id") for i in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{8,}", i) for i in ids), ids
    # The listener's random prefix, and its counter counting up.
    assert len({i.split("-")[0] for i in ids}) == 1
    counters = [int(i.split("-")[1], 16) for i in ids]
    assert counters == sorted(counters) and len(set(counters)) == 3


def test_a_head_that_fills_the_buffer_to_the_cap_leaves_the_connection_usable(make_gateway, sim, keys):
    # A request whose head is exactly limits.max_header_bytes long, served
    # while the upstream is slow, then a second request on the same
    # connection: it is read and answered (reading, paused on the full
    # buffer, resumes once the first request's bytes are dropped).
    cap = 4096
    gw = make_gateway(sim.url, config={"workers": 1, "limits": {"max_header_bytes": cap}})
    sim.fault(latency_ms=300)
    head = delete_head(keys.token(), "j-ok1", b"X-Pad: \r\n")
    head = head.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (cap - len(head)))
    assert len(head) == cap
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(head)
        first = b""
        while b'"upstream_request_id"' not in first:
            chunk = s.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 "), first[:200]
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        t0 = time.time()
        second = gwtest.read_until_closed(s)
        assert second.startswith(b"HTTP/1.1 200 ") and time.time() - t0 < 2, second[:200]
    finally:
        s.close()


def assert_head_only(out, status):
    """One answer to a HEAD request: its head, and not a byte of body."""
    head, sep, rest = out.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 %d " % status), out[:300]
    assert b"\r\nContent-Type: application/problem+json\r\n" in head, head
    assert rest == b"", rest[:200]


def test_refusals_of_a_head_request_have_no_body(gw, sim):
    # Refused at the HTTP layer (the head is never dispatched), each with the connection closed after it.
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n\r\n"),
                     413)
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /healthz HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n"), 400)
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /healthz HTTP/1.1\r\n\r\n"), 400)
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /healthz HTTP/2.0\r\nHost: a\r\n\r\n"), 505)
    assert_head_only(gwtest.raw_request(gw.port, b"\r\nHEAD /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * 40000 +
                                        b"\r\n\r\n"), 431)
    extra = b"".join(b"X-F%d: v\r\n" % i for i in range(120))
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /jobs/j-ok1 HTTP/1.1\r\nHost: a\r\n" + extra + b"\r\n"), 431)
    # Refused by a route.
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /jobs/j-ok1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                     405)
    assert_head_only(gwtest.raw_request(gw.port, b"HEAD /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 404)
    # A GET refused the same way still has its body.
    [resp] = split_responses(gwtest.raw_request(gw.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                                b"Content-Length: 999999\r\n\r\n"))
    assert_problem(resp, 413, "content-too-large")
    assert sim.requests() == []
