"""Upstream failures, retries, timeouts, and that nothing blocks the loop."""
import concurrent.futures
import time

import gwtest


def nonces(sim):
    return [r["params"].get("SignatureNonce") for r in sim.requests()]


def test_5xx_is_retried_then_502(gw, sim, keys):
    sim.fault(mode="error", status=503, code="ServiceUnavailable", count=-1)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 502, r
    assert r.json()["upstream_code"] == "ServiceUnavailable"
    # 1 + max_retries attempts, each freshly signed.
    n = nonces(sim)
    assert len(n) == 3 and len(set(n)) == 3
    o = gw.audit_for(r.header("X-Request-Id"))[-1]
    assert o["attempts"] == 3 and o["result"] == "failed" and o["upstream_status"] == 503


def test_transient_5xx_then_success(gw, sim, keys):
    sim.fault(mode="error", status=500, code="InternalError", count=1)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 200, r
    assert len(sim.requests()) == 2
    o = gw.audit_for(r.header("X-Request-Id"))[-1]
    assert o["attempts"] == 2 and o["result"] == "deleted"


def test_throttling_is_retried_then_429_with_retry_after(gw, sim, keys):
    sim.fault(mode="error", status=400, code="Throttling.User", count=-1)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 429, r
    assert int(r.header("Retry-After")) >= 1
    assert r.json()["upstream_code"] == "Throttling.User"
    assert len(sim.requests()) == 3


def test_timeout_after_send_is_504_unknown_and_not_retried(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config={"upstream": {"timeout_ms": 800, "connect_timeout_ms": 500}})
    sim.fault(mode="hang", count=-1)
    t0 = time.time()
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 504, r
    assert time.time() - t0 < 3
    assert "Repeating the DELETE is safe" in r.json()["detail"]
    assert len(sim.requests()) == 1
    o = gw.audit_for(r.header("X-Request-Id"))[-1]
    assert o["result"] == "unknown" and o["status"] == 504 and o["attempts"] == 1
    assert o["gateway_error"] == "timeout"


def test_connection_refused_is_retried_then_502(make_gateway, keys):
    port = gwtest.free_port()  # nothing listens there
    gw = make_gateway("http://127.0.0.1:%d/" % port)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 502, r
    assert r.json()["gateway_error"] == "connect_failed"
    assert "upstream_code" not in r.json()
    o = gw.audit_for(r.header("X-Request-Id"))[-1]
    assert o["attempts"] == 3 and o["result"] == "failed" and "upstream_status" not in o


def test_garbage_answer_is_502(gw, sim, keys):
    sim.fault(mode="garbage", count=-1)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 502, r
    o = gw.audit_for(r.header("X-Request-Id"))[-1]
    assert o["result"] == "unknown"  # a 200 we cannot read: the delete may have happened
    assert len(sim.requests()) == 1


def test_reset_after_send_is_502_unknown_not_retried(gw, sim, keys):
    sim.fault(mode="reset", count=-1)
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 502, r
    o = gw.audit_for(r.header("X-Request-Id"))[-1]
    assert o["result"] == "unknown" and o["attempts"] == 1
    assert len(sim.requests()) == 1


def test_deadline_bounds_retries(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config={"upstream": {"timeout_ms": 400, "connect_timeout_ms": 400,
                                                    "deadline_ms": 1000, "max_retries": 10}})
    sim.fault(mode="error", status=503, code="ServiceUnavailable", count=-1, delay_ms=300)
    t0 = time.time()
    r = gw.delete("j-ok1", keys.token())
    elapsed = time.time() - t0
    assert r.status in (502, 504), r
    assert elapsed < 2.0, elapsed
    assert len(sim.requests()) < 10


def test_concurrent_deletes_overlap(make_gateway, workdir, keys):
    sim = gwtest.Sim(workdir, all_jobs=True)
    try:
        gw = make_gateway(sim.url)
        sim.fault(mode="delay", delay_ms=300, count=-1)
        tokens = [keys.token() for _ in range(40)]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(40) as ex:
            statuses = list(ex.map(lambda i: gw.delete("j-ok%d" % i, tokens[i]).status, range(40)))
        elapsed = time.time() - t0
        assert statuses == [200] * 40
        # One at a time would take 12 s; overlapping calls take about 0.3 s.
        assert elapsed < 6, elapsed
        assert len(sim.requests()) == 40
    finally:
        sim.stop()


def test_slow_call_does_not_delay_others(make_gateway, workdir, keys):
    sim = gwtest.Sim(workdir, all_jobs=True)
    try:
        gw = make_gateway(sim.url)
        sim.fault(mode="hang", count=1)
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            slow = ex.submit(gw.delete, "j-okslow", keys.token())
            time.sleep(0.2)
            t0 = time.time()
            fast = gw.delete("j-okfast", keys.token())
            assert fast.status == 200 and time.time() - t0 < 1.0
            assert slow.result().status == 504
    finally:
        sim.stop()


def test_proxy_environment_is_ignored(make_gateway, sim, keys):
    # A proxy from the environment would send the signed call elsewhere.
    dead = gwtest.free_port()
    gw = make_gateway(sim.url, env={"http_proxy": "http://127.0.0.1:%d" % dead,
                                    "HTTP_PROXY": "http://127.0.0.1:%d" % dead,
                                    "ALL_PROXY": "http://127.0.0.1:%d" % dead})
    assert gw.delete("j-ok1", keys.token()).status == 200


def test_upstream_closing_an_idle_connection_is_noticed_quietly(make_gateway, workdir, keys):
    # The upstream drops keep-alive connections idle for a second.
    sim = gwtest.Sim(workdir, jobs={"j-ok1": "Ready", "j-ok2": "Ready"}, extra_args=["--conn-timeout", "1"])
    try:
        gw = make_gateway(sim.url, config={"workers": 1})
        assert gw.delete("j-ok1", keys.token()).status == 200
        before = gwtest.cpu_seconds(gw.proc.pid)
        time.sleep(2.5)
        # The closed connection between transfers wakes the loop once, not in a spin.
        assert gwtest.cpu_seconds(gw.proc.pid) - before < 0.3
        r = gw.delete("j-ok2", keys.token())
        assert r.status == 200, r
        assert [q["params"]["JobId"] for q in sim.requests()] == ["j-ok1", "j-ok2"]
        assert gw.audit_for(r.header("X-Request-Id"))[-1]["attempts"] == 1
    finally:
        sim.stop()

