"""CORS on error answers: a browser dashboard on an allowed origin can read
every answer the API listener gives it, problem bodies included (a bad JobId,
an unknown route, a body too large), and can preflight any path under /jobs
so that its DELETE reaches the route that refuses it. Other origins never get
a CORS header."""
import pytest

import gwtest

DASH = "https://dash.example.com"
EVIL = "https://dash.example.com.evil"


def cors_headers(r):
    return {k.lower(): v for k, v in r.headers if k.lower().startswith("access-control-")}


def vary(r):
    return [v.strip().lower() for k, val in r.headers if k.lower() == "vary" for v in val.split(",")]


@pytest.fixture
def dash_gw(make_gateway, sim):
    return make_gateway(sim.url, config={"cors": {"allowed_origins": [DASH]}})


ERRORS = [
    ("DELETE", "/jobs/bad!", 400, "bad-job-id"),
    ("DELETE", "/jobs/j-", 400, "bad-job-id"),
    ("DELETE", "/jobs/", 404, "not-found"),
    ("DELETE", "/jobs/j-ok1/x", 404, "not-found"),
    ("GET", "/nope", 404, "not-found"),
    ("GET", "/jobs/j-ok1", 405, "method-not-allowed"),
    ("DELETE", "/jobs/j-ok1", 401, "unauthenticated"),
]


@pytest.mark.parametrize("method,path,status,slug", ERRORS, ids=["%s %s" % (m, p) for m, p, _, _ in ERRORS])
def test_error_answers_to_an_allowed_origin_are_readable(dash_gw, sim, method, path, status, slug):
    r = gwtest.request(dash_gw.port, method, path, headers={"Origin": DASH})
    assert r.status == status, r
    assert r.header("Content-Type") == "application/problem+json"
    assert r.json()["type"] == "urn:smc-gateway:problem:" + slug
    assert r.header("Access-Control-Allow-Origin") == DASH, r.headers
    assert "x-request-id" in r.header("Access-Control-Expose-Headers").lower()
    assert "origin" in vary(r)
    # Another origin: the same answer, no CORS header (Vary still says it depends on Origin).
    r = gwtest.request(dash_gw.port, method, path, headers={"Origin": EVIL})
    assert r.status == status, r
    assert cors_headers(r) == {}, r.headers
    assert "origin" in vary(r)
    r = gwtest.request(dash_gw.port, method, path)
    assert r.status == status and cors_headers(r) == {}, r.headers
    assert sim.requests() == []


def test_a_body_too_large_from_an_allowed_origin_is_readable(dash_gw, sim):
    out = gwtest.raw_request(dash_gw.port, b"DELETE /jobs/j-ok1 HTTP/1.1\r\nHost: a\r\nOrigin: " + DASH.encode() +
                             b"\r\nContent-Length: 999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:300]
    assert b"\r\nAccess-Control-Allow-Origin: " + DASH.encode() + b"\r\n" in out
    out = gwtest.raw_request(dash_gw.port, b"DELETE /jobs/j-ok1 HTTP/1.1\r\nHost: a\r\nOrigin: " + EVIL.encode() +
                             b"\r\nContent-Length: 999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ") and b"Access-Control-" not in out, out[:400]


@pytest.mark.parametrize("path", ["/jobs/bad!", "/jobs/", "/jobs/j-ok1/x"])
def test_any_path_under_jobs_can_be_preflighted(dash_gw, sim, path):
    pre = {"Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization"}
    r = gwtest.request(dash_gw.port, "OPTIONS", path, headers=dict(pre, Origin=DASH))
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == DASH
    assert r.header("Access-Control-Allow-Methods") == "DELETE"
    r = gwtest.request(dash_gw.port, "OPTIONS", path, headers=dict(pre, Origin=EVIL))
    assert r.status == 403 and cors_headers(r) == {}, r.headers
    assert sim.requests() == []


def test_without_cors_error_answers_have_no_cors_headers(gw, sim):
    r = gwtest.request(gw.port, "DELETE", "/jobs/bad!", headers={"Origin": DASH})
    assert r.status == 400 and cors_headers(r) == {} and vary(r) == [], r.headers
    r = gwtest.request(gw.port, "OPTIONS", "/jobs/bad!", headers={"Origin": DASH})
    assert r.status == 400 and cors_headers(r) == {}, r.headers
