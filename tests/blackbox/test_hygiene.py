"""Hostile request shapes get a clear 4xx and never reach the upstream."""
import pytest

import gwtest


@pytest.mark.parametrize("path", [
    "/jobs/j-1%26Action%3DDeleteSourceServer",
    "/jobs/j-1&Action=DeleteSourceServer",
    "/jobs/j-1%2F..%2Fx",
    "/jobs/j-1%00",
    "/jobs/j-" + "a" * 298,
    "/jobs/x-123",
    "/jobs/j-",
    "/jobs/j-1=2",
    "/jobs/j-%C3%A9",
])
def test_hostile_job_ids_are_400(gw, sim, keys, path):
    r = gwtest.request(gw.port, "DELETE", path, headers={"Authorization": "Bearer " + keys.token()})
    assert r.status == 400, r
    assert r.header("Content-Type") == "application/problem+json"
    assert r.json()["status"] == 400
    assert sim.requests() == []
    [e] = gw.audit_for(r.header("X-Request-Id"))
    assert e["reason"] == "bad_job_id" and e["job_id"] is None
    assert "\x00" not in e["path"] and len(e["path"]) <= 256 * 3


def test_query_string_is_ignored_and_never_forwarded(gw, sim, keys):
    r = gwtest.request(gw.port, "DELETE", "/jobs/j-ok1?Action=DeleteSourceServer&JobId=j-bp1ready",
                       headers={"Authorization": "Bearer " + keys.token()})
    assert r.status == 200, r
    [up] = sim.requests()
    assert up["params"]["Action"] == "DeleteReplicationJob" and up["params"]["JobId"] == "j-ok1"
    assert "j-bp1ready" in sim.jobs()


@pytest.mark.parametrize("path", ["/jobs/j-ok1/", "/jobs/j-ok1/x", "/jobs/", "/jobs", "/", "/job/j-ok1"])
def test_other_paths_are_404(gw, sim, keys, path):
    r = gwtest.request(gw.port, "DELETE", path, headers={"Authorization": "Bearer " + keys.token()})
    assert r.status == 404, r
    assert r.header("Content-Type") == "application/problem+json"
    assert sim.requests() == []


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_405(gw, sim, keys, method):
    r = gwtest.request(gw.port, method, "/jobs/j-ok1", headers={"Authorization": "Bearer " + keys.token()})
    assert r.status == 405, r
    assert r.header("Allow") == "DELETE"
    assert sim.requests() == []


def smuggle(gw, keys, extra_headers, body=b""):
    tok = keys.token()
    req = (b"DELETE /jobs/j-ok1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok.encode() + b"\r\n" +
           extra_headers + b"\r\n" + body)
    return gwtest.raw_request(gw.port, req)


def test_transfer_encoding_is_400_and_closes(gw, sim, keys):
    out = smuggle(gw, keys, b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert b"Connection: close" in out
    assert b"application/problem+json" in out
    assert sim.requests() == []


def test_two_content_lengths_are_400(gw, sim, keys):
    out = smuggle(gw, keys, b"Content-Length: 0\r\nContent-Length: 44\r\n",
                  b"DELETE /jobs/j-bp1ready HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert b"Connection: close" in out
    assert out.count(b"HTTP/1.1") == 1
    assert sim.requests() == []


def test_body_on_delete_is_400(gw, sim, keys):
    out = smuggle(gw, keys, b"Content-Length: 5\r\n", b"hello")
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert b"Connection: close" in out
    assert sim.requests() == []


def test_absolute_form_target_is_400(gw, sim, keys):
    out = gwtest.raw_request(gw.port, b"DELETE http://evil/jobs/j-ok1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert sim.requests() == []


def test_oversized_headers_refused(gw, sim, keys):
    out = gwtest.raw_request(gw.port, b"DELETE /jobs/j-ok1 HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40000 +
                             b"\r\nAuthorization: Bearer " + keys.token().encode() + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 4"), out[:200]
    assert sim.requests() == []
    # The gateway is still serving.
    assert gw.delete("j-ok1", keys.token()).status == 200


def test_request_id_kept_or_replaced(gw, sim, keys):
    r = gw.delete("j-nope", None, headers={"X-Request-Id": "abc.DEF_123-x"})
    assert r.header("X-Request-Id") == "abc.DEF_123-x"
    r = gw.delete("j-nope", None, headers={"X-Request-Id": "bad id\u00e9".encode().decode("latin-1")})
    rid = r.header("X-Request-Id")
    assert rid and " " not in rid
    r = gw.delete("j-nope", None, headers={"X-Request-Id": "x" * 129})
    assert len(r.header("X-Request-Id")) < 129
    assert r.json()["request_id"] == r.header("X-Request-Id")
