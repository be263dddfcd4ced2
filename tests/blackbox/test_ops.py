"""Operating the gateway: reload on SIGHUP, graceful shutdown, health and
metrics endpoints, the admin listener, connection and request limits, rate
limits, CORS, trusted proxies (X-Forwarded-For and the PROXY protocol), and
the refusal to run as root.

Every test starts its own gateway and simulator (fixtures in conftest.py);
timeouts in the configs are small so the whole file stays fast.
"""
import concurrent.futures
import copy
import http.client
import json
import os
import re
import secrets
import select
import signal
import socket
import time

import pytest

import gwtest

# Small upstream timeouts so slow paths stay short; shutdown_timeout_ms must
# be at least deadline_ms or the gateway refuses the config.
FAST = {"upstream": {"connect_timeout_ms": 500, "timeout_ms": 3000, "deadline_ms": 4000, "max_retries": 0},
        "shutdown_timeout_ms": 4000}


def fast(**extra):
    cfg = copy.deepcopy(FAST)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = dict(cfg[k], **v)
        else:
            cfg[k] = v
    return cfg


def policy(**team_over):
    """DEFAULT_POLICY with members of team "migration" replaced."""
    p = copy.deepcopy(gwtest.DEFAULT_POLICY)
    p["teams"]["migration"].update(team_over)
    return p


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    end = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > end:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def log_lines(gw):
    """The service log as parsed JSON lines (every line must be JSON)."""
    out = []
    for line in gw.log().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def logged(gw, needle):
    return [e for e in log_lines(gw) if needle in e.get("msg", "")]


def sighup_and_wait(gw, needle):
    before = len(logged(gw, needle))
    gw.proc.send_signal(signal.SIGHUP)
    return wait_until(lambda: len(logged(gw, needle)) > before and logged(gw, needle)[-1],
                      what="log line %r" % needle)


def write_policy(gw, pol):
    # Write beside and rename, as a config management tool would.
    tmp = gw.policy_file + ".new"
    with open(tmp, "w") as f:
        json.dump(pol, f)
    os.replace(tmp, gw.policy_file)


def get(port, path, **kw):
    return gwtest.request(port, "GET", path, **kw)


def audit_entries(gw, rid, wait=3.0):
    return gw.audit_for(rid, wait=wait)


# ---------------------------------------------------------------------------
# A strict parser of the Prometheus text exposition format (version 0.0.4).

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)(?: (-?[0-9]+))?$" % _NAME)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_VALUE_RE = re.compile(r"^(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN)$")
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def _labels(s, line):
    labels = {}
    pos = 0
    while pos < len(s):
        m = _LABEL_RE.match(s, pos)
        assert m, "bad label set in %r" % line
        name = m.group(1)
        assert name not in labels, "label %s repeated in %r" % (name, line)
        labels[name] = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        if pos < len(s):
            assert s[pos] == ",", "labels not separated by a comma in %r" % line
            pos += 1
    return labels


class Metrics:
    def __init__(self, text):
        self.text = text
        self.types = {}
        self.helps = {}
        self.samples = []  # (name, labels, value)
        self.parse(text)
        self.check_histograms()

    def family_of(self, name):
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                if suffix == "_bucket" and self.types[base] != "histogram":
                    break
                return base
        raise AssertionError("sample %s has no # TYPE line before it" % name)

    def parse(self, text):
        assert text.endswith("\n"), "exposition does not end with a newline"
        seen_series = set()
        done_families = set()
        current = None
        for line in text[:-1].split("\n"):
            assert line == line.strip() and line, "blank or padded line %r" % line
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    kind, name = parts[1], parts[2]
                    assert re.match("^%s$" % _NAME, name), line
                    assert name not in done_families and not any(s[0] == name for s in self.samples), \
                        "%s for %s after its samples" % (kind, name)
                    if kind == "TYPE":
                        assert len(parts) == 4 and parts[3] in _TYPES, line
                        assert name not in self.types, "second TYPE for %s" % name
                        self.types[name] = parts[3]
                    else:
                        assert name not in self.helps, "second HELP for %s" % name
                        assert name not in self.types, "HELP for %s after its TYPE" % name
                        self.helps[name] = parts[3] if len(parts) == 4 else ""
                    if current is not None and current != name:
                        done_families.add(current)
                    current = name
                continue
            m = _SAMPLE_RE.match(line)
            assert m, "not a sample line: %r" % line
            name, labels, value = m.group(1), _labels(m.group(2) or "", line), m.group(3)
            assert _VALUE_RE.match(value), "bad value in %r" % line
            fam = self.family_of(name)
            # One family's lines are together.
            if fam != current:
                assert fam not in done_families, "samples of %s are not contiguous" % fam
                if current is not None:
                    done_families.add(current)
                current = fam
            key = (name, tuple(sorted(labels.items())))
            assert key not in seen_series, "series repeated: %r" % line
            seen_series.add(key)
            v = float(value)
            if self.types[fam] == "counter":
                assert v >= 0 and v == int(v), "counter %r is not a count" % line
                assert fam.endswith("_total"), "counter %s does not end in _total" % fam
            self.samples.append((name, labels, v))
        for name in self.helps:
            assert name in self.types, "HELP without TYPE for %s" % name

    def check_histograms(self):
        for fam, t in self.types.items():
            if t != "histogram":
                continue
            groups = {}
            for name, labels, v in self.samples:
                if self.family_of(name) != fam:
                    continue
                rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
                if name == fam + "_bucket":
                    assert "le" in labels, "bucket without le: %s %r" % (name, labels)
                    g["buckets"].append((labels["le"], v))
                elif name == fam + "_sum":
                    g["sum"] = v
                elif name == fam + "_count":
                    g["count"] = v
                else:
                    raise AssertionError("histogram %s has a bare sample %s" % (fam, name))
            assert groups, "histogram %s has no samples" % fam
            for rest, g in groups.items():
                b = g["buckets"]
                assert b and b[-1][0] == "+Inf", "%s%r: buckets do not end with +Inf" % (fam, rest)
                les = [float(le) for le, _ in b]
                assert les == sorted(les) and len(set(les)) == len(les), "%s: le not increasing" % fam
                counts = [c for _, c in b]
                assert counts == sorted(counts), "%s%r: buckets not cumulative: %r" % (fam, rest, counts)
                assert g["count"] is not None and g["sum"] is not None, "%s%r: _sum/_count missing" % (fam, rest)
                assert counts[-1] == g["count"], "%s%r: +Inf bucket %s != _count %s" % (
                    fam, rest, counts[-1], g["count"])
                assert g["sum"] >= 0

    def value(self, name, **labels):
        """The value of the one series with exactly these labels (0 if absent)."""
        for n, l, v in self.samples:
            if n == name and l == labels:
                return v
        return 0

    def series(self, name):
        return [(l, v) for n, l, v in self.samples if n == name]


def metrics(port):
    r = get(port, "/metrics")
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain"), r.header("Content-Type")
    return Metrics(r.body.decode())


def test_metrics_parser_rejects_bad_expositions():
    """The parser used below must be able to fail."""
    good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n")
    Metrics(good)
    bad = [
        good.replace("h_count 2", "h_count 3"),                      # +Inf != _count
        good.replace('h_bucket{le="1"} 1', 'h_bucket{le="1"} 5'),    # not cumulative
        good.replace('h_bucket{le="+Inf"} 2\n', ""),                 # no +Inf
        good.replace("a_total{x=\"1\"} 3", "a_total{x=1} 3"),         # unquoted label
        good.replace("# TYPE a_total counter\n", ""),                # no TYPE
        good + "a_total{x=\"2\"} 1\n",                               # not contiguous
        good.replace("} 3", "} three"),                              # bad value
        good + "# TYPE a_total counter\n",                           # second TYPE
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            Metrics(text)


# ---------------------------------------------------------------------------
# 1. Reload on SIGHUP


def test_reload_policy_change_takes_effect_without_restart(make_gateway, sim, keys):
    sim.add_jobs({"j-zz1": "Ready"})
    gw = make_gateway(sim.url, config=fast())
    pid = gw.proc.pid
    r = gw.delete("j-zz1", keys.token())
    assert r.status == 403, r
    assert audit_entries(gw, r.header("X-Request-Id"))[-1]["reason"] == "job_not_allowed"
    m0 = metrics(gw.port)
    gen0 = m0.value("smc_gateway_config_generation")

    write_policy(gw, policy(jobs=["j-bp1*", "j-ok*", "j-zz*"]))
    line = sighup_and_wait(gw, "configuration reloaded")
    assert "generation %d" % (gen0 + 1) in line["msg"], line

    r = gw.delete("j-zz1", keys.token())
    assert r.status == 200, r
    assert gw.proc.pid == pid and gw.proc.poll() is None  # same process, no restart
    assert [q["params"]["JobId"] for q in sim.requests()] == ["j-zz1"]
    m1 = metrics(gw.port)
    assert m1.value("smc_gateway_reloads_total") == m0.value("smc_gateway_reloads_total") + 1
    assert m1.value("smc_gateway_reload_failures_total") == 0
    assert m1.value("smc_gateway_config_generation") == gen0 + 1


def test_reload_of_broken_policy_is_refused_and_old_policy_keeps_serving(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast())
    m0 = metrics(gw.port)
    broken = policy(jobs="j-*")  # a string where an array is required
    write_policy(gw, broken)
    line = sighup_and_wait(gw, "reload refused")
    assert line["level"] == "error", line
    assert gw.policy_file in line["msg"], line
    assert "teams.migration.jobs" in line["msg"], line
    assert not logged(gw, "configuration reloaded")
    assert gw.proc.poll() is None

    m1 = metrics(gw.port)
    assert m1.value("smc_gateway_reload_failures_total") == m0.value("smc_gateway_reload_failures_total") + 1
    assert m1.value("smc_gateway_reloads_total") == m0.value("smc_gateway_reloads_total")
    assert m1.value("smc_gateway_config_generation") == m0.value("smc_gateway_config_generation")

    # The old policy: j-ok1 allowed, a job outside the patterns still denied
    # (the broken file's "j-*" would not have been taken either way).
    sim.add_jobs({"j-zz1": "Ready"})
    assert gw.delete("j-ok1", keys.token()).status == 200
    r = gw.delete("j-zz1", keys.token())
    assert r.status == 403, r

    # A later valid file is taken again.
    write_policy(gw, policy(jobs=["j-zz*"]))
    sighup_and_wait(gw, "configuration reloaded")
    assert gw.delete("j-zz1", keys.token()).status == 200


def test_in_flight_request_finishes_with_the_config_it_started_with(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast())
    sim.fault(mode="delay", delay_ms=1500, count=1)
    tok = keys.token()
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(gw.delete, "j-ok1", tok, headers={"X-Request-Id": "slow-1"})
        wait_until(lambda: len(sim.requests()) == 1, what="the slow call to reach the upstream")
        # A policy that no longer covers j-ok*.
        write_policy(gw, policy(jobs=["j-bp1*"]))
        sighup_and_wait(gw, "configuration reloaded")
        r = gw.delete("j-ok1", keys.token())
        assert r.status == 403, r
        assert audit_entries(gw, r.header("X-Request-Id"))[-1]["reason"] == "job_not_allowed"
        assert not slow.done(), "the slow call ended before the reload could matter"
        r = slow.result(timeout=10)
    assert r.status == 200, r
    assert r.json()["job_id"] == "j-ok1"
    entries = audit_entries(gw, "slow-1")
    assert [(e["event"], e["decision"]) for e in entries] == [("decision", "allow"), ("outcome", "allow")]
    assert entries[1]["result"] == "deleted" and entries[1]["status"] == 200
    assert entries[1]["team"] == "migration" and entries[1]["sub"] == "alice@example.com"
    assert len(sim.requests()) == 1
    gw.stop()
    gwtest.verify_chain(open(gw.audit_file, "rb").read())


# ---------------------------------------------------------------------------
# 2. Graceful shutdown


def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(make_gateway, sim, keys):
    n = 20
    sim.add_jobs({"j-slow%d" % i: "Ready" for i in range(n)})
    gw = make_gateway(sim.url, config=fast())
    # A keep-alive connection, opened and used before the signal.
    ka = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    ka.request("DELETE", "/jobs/j-ok1", headers={"Authorization": "Bearer " + keys.token()})
    r = ka.getresponse()
    r.read()
    assert r.status == 200 and not r.will_close

    sim.clear()
    sim.fault(mode="delay", delay_ms=1500, count=-1)
    tokens = [keys.token() for _ in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(gw.delete, "j-slow%d" % i, tokens[i], headers={"X-Request-Id": "drain-%d" % i},
                          timeout=15) for i in range(n)]
        wait_until(lambda: len(sim.requests()) == n, what="all %d calls upstream" % n)
        t_term = time.time()
        gw.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: logged(gw, "draining"), what="the drain log line")
        time.sleep(0.1)

        # A new connection is refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gw.port), timeout=2).close()
        # A new request on an open keep-alive connection: 503 and Connection: close.
        ka.request("DELETE", "/jobs/j-bp1ready", headers={"Authorization": "Bearer " + keys.token()})
        r = ka.getresponse()
        body = r.read()
        assert r.status == 503, body
        assert (r.getheader("Connection") or "").lower() == "close"
        assert r.getheader("Retry-After") is not None
        assert json.loads(body)["type"] == "urn:smc-gateway:problem:shutting-down"
        ka.close()
        assert not any(f.done() for f in futs), "in-flight calls ended early"

        results = [f.result(timeout=15) for f in futs]
    assert [x.status for x in results] == [200] * n, results
    rc = gw.proc.wait(10)
    elapsed = time.time() - t_term
    assert rc == 0, gw.log()
    assert elapsed < 4.0, elapsed  # drained as soon as the calls were done
    for i in range(n):
        entries = [e for e in gw.audit() if e.get("request_id") == "drain-%d" % i]
        assert [e["event"] for e in entries] == ["decision", "outcome"], entries
        assert entries[1]["result"] == "deleted" and entries[1]["status"] == 200
    # Nothing sent after the signal reached the upstream: only the 20.
    assert len(sim.requests()) == n
    assert "j-bp1ready" in sim.jobs()
    gwtest.verify_chain(open(gw.audit_file, "rb").read())
    assert logged(gw, "smc-gateway stopped")


# ---------------------------------------------------------------------------
# 3. /healthz, /readyz, /metrics


def test_healthz_and_readyz_on_the_main_listener_without_admin_listen(gw, sim, keys):
    r = get(gw.port, "/healthz")
    assert r.status == 200 and r.json() == {"status": "alive"}, r
    r = get(gw.port, "/readyz")
    assert r.status == 200 and r.json() == {"ready": True}, r
    # No token needed, and none of them reaches the upstream or the audit.
    assert sim.requests() == []
    assert gw.audit() == []


def test_readyz_is_503_draining_during_shutdown(make_gateway, sim, keys):
    admin = gwtest.free_port()
    gw = make_gateway(sim.url, config=fast(admin_listen="127.0.0.1:%d" % admin))
    assert get(admin, "/readyz").status == 200
    sim.fault(mode="delay", delay_ms=1500, count=1)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(gw.delete, "j-ok1", keys.token())
        wait_until(lambda: len(sim.requests()) == 1, what="the slow call upstream")
        gw.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: logged(gw, "draining"), what="the drain log line")
        r = get(admin, "/readyz", timeout=2)
        assert r.status == 503, r
        assert r.json() == {"ready": False, "reason": "draining"}
        # Liveness stays fine while draining.
        assert get(admin, "/healthz", timeout=2).status == 200
        m = metrics(admin)
        assert m.value("smc_gateway_draining") == 1
        assert m.value("smc_gateway_in_flight_requests") == 1
        assert not slow.done()
        assert slow.result(timeout=10).status == 200
    assert gw.proc.wait(10) == 0


def test_readyz_is_503_when_the_audit_log_is_not_writable(make_gateway, sim, keys, workdir):
    os.symlink("/dev/full", os.path.join(workdir, "audit.jsonl"))
    gw = make_gateway(sim.url, config=fast())
    r = gw.delete("j-ok1", keys.token())
    assert r.status == 503, r
    # Polled a few times over more than one recovery attempt (1 s apart).
    for _ in range(6):
        r = get(gw.port, "/readyz")
        assert r.status == 503, r
        assert r.json() == {"ready": False, "reason": "audit log not writable"}
        time.sleep(0.25)
    assert get(gw.port, "/healthz").status == 200
    assert metrics(gw.port).value("smc_gateway_audit_healthy") == 0
    assert sim.requests() == []


def test_metrics_are_valid_prometheus_text_and_counters_move(gw, sim, keys):
    m0 = metrics(gw.port)
    for fam in ("smc_gateway_requests_total", "smc_gateway_decisions_total", "smc_gateway_upstream_calls_total",
                "smc_gateway_reloads_total", "smc_gateway_reload_failures_total",
                "smc_gateway_connection_limit_hits_total"):
        assert m0.types.get(fam) == "counter", fam
    for fam in ("smc_gateway_in_flight_requests", "smc_gateway_open_connections", "smc_gateway_upstream_in_flight",
                "smc_gateway_upstream_queued", "smc_gateway_audit_healthy", "smc_gateway_draining",
                "smc_gateway_config_generation", "smc_gateway_build_info"):
        assert m0.types.get(fam) == "gauge", fam
    for fam in ("smc_gateway_request_duration_seconds", "smc_gateway_upstream_duration_seconds",
                "smc_gateway_audit_write_seconds", "smc_gateway_audit_sync_seconds"):
        assert m0.types.get(fam) == "histogram", fam
    assert m0.value("smc_gateway_audit_healthy") == 1
    assert m0.value("smc_gateway_draining") == 0
    assert [l for l, _ in m0.series("smc_gateway_build_info")][0].keys() == {"version"}

    ok = dict(route="jobs", status="200", team="migration")
    jobs = ["j-ok1", "j-bp1ready", "j-bp2abcdef"]
    for j in jobs:
        assert gw.delete(j, keys.token()).status == 200
    r = gw.delete("j-bp1running", keys.token())
    assert r.status == 409, r
    r = gw.delete("j-zz9", keys.token())
    assert r.status == 403, r
    m1 = metrics(gw.port)
    assert m1.value("smc_gateway_requests_total", **ok) - m0.value("smc_gateway_requests_total", **ok) == len(jobs)
    assert m1.value("smc_gateway_requests_total", route="jobs", status="409", team="migration") == 1
    assert m1.value("smc_gateway_requests_total", route="jobs", status="403", team="migration") == 1
    assert m1.value("smc_gateway_decisions_total", decision="allow", reason="allowed") == len(jobs) + 1
    assert m1.value("smc_gateway_decisions_total", decision="deny", reason="job_not_allowed") == 1
    up = sum(v for l, v in m1.series("smc_gateway_upstream_calls_total"))
    assert up == len(jobs) + 1
    assert m1.value("smc_gateway_upstream_duration_seconds_count") == len(jobs) + 1
    assert m1.value("smc_gateway_request_duration_seconds_count", route="jobs") == len(jobs) + 2
    assert m1.value("smc_gateway_audit_sync_seconds_count") >= len(jobs)
    assert m1.value("smc_gateway_in_flight_requests") == 0
    # The first /metrics request is counted by the second.
    assert m1.value("smc_gateway_requests_total", route="metrics", status="200", team="unknown") >= 1


def test_metrics_team_labels_only_name_policy_teams(gw, sim, keys):
    evil = "evil-" + secrets.token_hex(6)
    for i in range(5):
        r = gw.delete("j-ok1", keys.token(team="%s-%d" % (evil, i)))
        assert r.status == 403, r
    r = gw.delete("j-ok1", keys.token(team=[evil + "-list", evil]))
    assert r.status == 403, r
    # A token that fails verification, carrying an invented team.
    r = gw.delete("j-ok1", keys.token(team=evil, iss="https://other.example.com"))
    assert r.status == 401, r
    # A sanity request with a real team.
    assert gw.delete("j-ok1", keys.token()).status == 200
    m = metrics(gw.port)
    assert "evil" not in m.text
    teams = {l["team"] for l, _ in m.series("smc_gateway_requests_total")}
    assert teams <= set(gwtest.DEFAULT_POLICY["teams"]) | {"unknown"}, teams
    assert m.value("smc_gateway_requests_total", route="jobs", status="403", team="unknown") == 6
    assert m.value("smc_gateway_requests_total", route="jobs", status="401", team="unknown") == 1
    assert m.value("smc_gateway_requests_total", route="jobs", status="200", team="migration") == 1


# ---------------------------------------------------------------------------
# 4. admin_listen


def test_admin_listener_serves_health_and_metrics_only(make_gateway, sim, keys):
    admin = gwtest.free_port()
    gw = make_gateway(sim.url, config=fast(admin_listen="127.0.0.1:%d" % admin))
    gwtest.wait_port(admin, gw.proc)
    assert get(admin, "/healthz").json() == {"status": "alive"}
    assert get(admin, "/readyz").json() == {"ready": True}
    m = metrics(admin)
    assert m.types["smc_gateway_requests_total"] == "counter"
    # The main listener does not serve them.
    for path in ("/healthz", "/readyz", "/metrics"):
        r = get(gw.port, path)
        assert r.status == 404, (path, r)
    # The admin listener does not serve /jobs, with or without a token.
    r = gwtest.request(admin, "DELETE", "/jobs/j-ok1", headers={"Authorization": "Bearer " + keys.token()})
    assert r.status == 404, r
    assert get(admin, "/jobs/j-ok1").status == 404
    assert get(admin, "/").status == 404
    assert sim.requests() == []
    assert "j-ok1" in sim.jobs()
    # The main listener still deletes.
    assert gw.delete("j-ok1", keys.token()).status == 200


# ---------------------------------------------------------------------------
# 5. Limits


def read_http_response(sock):
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    return resp.status, resp, body


def test_oversized_request_head_is_refused_before_upstream(gw, sim, keys):
    tok = keys.token()
    # Identity providers' tokens exceed 8 KiB: a 20 KB head is fine...
    r = gw.delete("j-ok1", tok, headers={"X-Pad": "a" * 20000})
    assert r.status == 200, r
    sim.clear()
    # ...one beyond limits.max_header_bytes (32768) is not.
    req = ("DELETE /jobs/j-bp1ready HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Pad: %s\r\n\r\n"
           % (tok, "b" * 40000)).encode()
    out = gwtest.raw_request(gw.port, req)
    status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.") else None
    assert status is not None and 400 <= status < 500, out[:200]
    assert sim.requests() == []
    assert "j-bp1ready" in sim.jobs()


def trickle_until_closed(port, data, every=1.0, limit=8.0):
    """Send data one byte per `every` seconds; return (seconds until the server
    closed, bytes sent, bytes received)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    sent = 0
    got = b""
    try:
        while time.time() - t0 < limit:
            if sent < len(data):
                try:
                    s.send(data[sent:sent + 1])
                    sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    return time.time() - t0, sent, got
            deadline = time.time() + every
            while time.time() < deadline:
                rd, _, _ = select.select([s], [], [], max(0.0, deadline - time.time()))
                if rd:
                    try:
                        chunk = s.recv(65536)
                    except ConnectionResetError:
                        return time.time() - t0, sent, got
                    if not chunk:
                        return time.time() - t0, sent, got
                    got += chunk
        return None, sent, got
    finally:
        s.close()


def test_slow_request_head_is_cut_off_at_the_header_deadline(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(limits={"header_timeout_ms": 1500}))
    tok = keys.token()
    req = ("DELETE /jobs/j-ok1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % tok).encode()
    closed_after, sent, got = trickle_until_closed(gw.port, req)
    assert closed_after is not None, "the connection was still open after 8 s of trickling"
    assert 1.2 <= closed_after < 3.0, closed_after
    assert sent < len(req)
    assert sim.requests() == []
    assert metrics(gw.port).value("smc_gateway_header_timeouts_total") >= 1

    # The deadline runs from the first byte of a later head, not from the
    # previous reply: a keep-alive connection idle longer than the deadline
    # still works, and a later head trickled on it is cut off the same way.
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(req)
        status, _, body = read_http_response(s)
        assert status == 200, body
        time.sleep(2.0)
        s.sendall(req.replace(b"j-ok1", b"j-bp1ready"))
        status, _, body = read_http_response(s)
        assert status == 200, body
        t0 = time.time()
        later = req.replace(b"j-ok1", b"j-bp2abcdef")
        closed = None
        for i in range(8):
            try:
                s.send(later[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = time.time() - t0
                break
            rd, _, _ = select.select([s], [], [], 1.0)
            if rd:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed = time.time() - t0
                    break
        assert closed is not None and closed < 3.0, closed
    finally:
        s.close()
    assert [q["params"]["JobId"] for q in sim.requests()] == ["j-ok1", "j-bp1ready"]
    assert "j-bp2abcdef" in sim.jobs()


def test_idle_connections_do_not_lock_out_a_legitimate_caller(gw, sim, keys):
    idle = []
    try:
        for _ in range(400):
            idle.append(socket.create_connection(("127.0.0.1", gw.port), timeout=5))
        wait_until(lambda: metrics(gw.port).value("smc_gateway_open_connections") >= 400,
                   what="400 idle connections accepted")
        t0 = time.time()
        r = gw.delete("j-ok1", keys.token(), timeout=5)
        assert r.status == 200, r
        assert time.time() - t0 < 2.0  # not held until the idle sockets time out
    finally:
        for s in idle:
            s.close()


def test_connection_cap_pauses_accepting_until_connections_close(make_gateway, sim, keys):
    admin = gwtest.free_port()
    # The connection cap is per worker thread (like nginx's worker_connections): one worker here.
    gw = make_gateway(sim.url, config=fast(admin_listen="127.0.0.1:%d" % admin, workers=1,
                                           limits={"max_connections": 20}))
    # The harness's readiness probe used a connection; let it go first.
    wait_until(lambda: metrics(admin).value("smc_gateway_open_connections") == 0, what="probe closed")
    idle = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(20)]
    try:
        wait_until(lambda: metrics(admin).value("smc_gateway_open_connections") == 20, what="20 connections")
        tok = keys.token()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            t0 = time.time()
            fut = ex.submit(gw.delete, "j-ok1", tok, timeout=10)
            time.sleep(1.0)
            assert not fut.done(), "served although max_connections were open: %r" % (
                fut.result() if fut.done() else None)
            assert sim.requests() == []
            for s in idle[:5]:
                s.close()
            r = fut.result(timeout=5)
            served_after = time.time() - t0
        assert r.status == 200, r
        assert 1.0 <= served_after < 4.0
    finally:
        for s in idle:
            s.close()
    m = metrics(admin)
    assert m.value("smc_gateway_connection_limit_hits_total") > 0
    assert len(sim.requests()) == 1


def test_a_burst_of_connects_is_queued_by_the_listen_backlog(make_gateway, sim, keys):
    # Load tools and dashboards behind a NAT open hundreds of connections at
    # once. While the gateway is not accepting (stopped here), the kernel
    # queues them up to the listen backlog; past it, SYNs are dropped and the
    # client waits a retransmit (a second or more). Two workers: the second
    # watches the first one's socket and must not shrink its backlog.
    gw = make_gateway(sim.url, config=fast(workers=2, limits={"max_connections": 1024}))
    n = 400
    socks = []
    os.kill(gw.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", gw.port))
            socks.append(s)
        deadline = time.time() + 0.8  # under the first SYN retransmit (1 s)
        pending = set(socks)
        while pending and time.time() < deadline:
            _, ready, _ = select.select([], list(pending)[:500], [], 0.1)
            pending -= set(ready)
        lost = len(pending) + sum(1 for s in socks if s not in pending and s.getsockopt(socket.SOL_SOCKET,
                                                                                         socket.SO_ERROR) != 0)
        assert lost == 0, "%d of %d connects were not queued" % (lost, n)
    finally:
        os.kill(gw.proc.pid, signal.SIGCONT)
        for s in socks:
            s.close()
    r = gw.delete("j-ok1", keys.token(), timeout=5)
    assert r.status == 200, r


def test_a_second_gateway_on_the_same_port_is_refused(make_gateway, sim, keys, tmp_path):
    # The workers listen with SO_REUSEPORT (the kernel spreads connections
    # over them); a second gateway started by mistake on the port must fail
    # to start, not silently take a share of the callers.
    first = make_gateway(sim.url, config=fast(workers=2))
    for workers in (2, 1):
        second = gwtest.Gateway(str(tmp_path), keys, sim.url, start=False,
                                config=fast(workers=workers, listen="127.0.0.1:%d" % first.port))
        rc, out = second.run_expect_exit()
        assert rc == 1 and "listen: cannot bind 127.0.0.1:%d" % first.port in out, (workers, rc, out)
    r = first.delete("j-ok1", keys.token(), timeout=5)
    assert r.status == 200, r


def test_connections_are_spread_over_the_workers(make_gateway, sim, keys):
    # 64 keep-alive callers connecting at once: each worker thread must serve
    # some of them (one listening socket watched by both let one worker take
    # them all). Each request's id names the worker's listener prefix.
    gw = make_gateway(sim.url, config=fast(workers=2))
    tok = keys.token()
    sim.add_jobs({"j-okspread%d" % i: "Ready" for i in range(64)})
    conns = [http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10) for _ in range(64)]
    try:
        for c in conns:
            c.connect()
        prefixes = set()
        for i, c in enumerate(conns):
            c.request("DELETE", "/jobs/j-okspread%d" % i, headers={"Authorization": "Bearer " + tok})
            resp = c.getresponse()
            body = json.loads(resp.read())
            assert resp.status == 200, body
            prefixes.add(body["request_id"].split("-")[0])
    finally:
        for c in conns:
            c.close()
    assert len(prefixes) == 2, prefixes


def concurrent_deletions_and_syncs(make_gateway, sim, keys, group_commit_us, n=40):
    """n deletions at once; the audit fdatasyncs they cost (from /metrics)."""
    admin = gwtest.free_port()
    gw = make_gateway(sim.url, config=fast(admin_listen="127.0.0.1:%d" % admin, workers=1,
                                           audit={"group_commit_us": group_commit_us}))
    tok = keys.token()
    sim.add_jobs({"j-okgc%04d" % i: "Ready" for i in range(n)})
    before = metrics(admin).value("smc_gateway_audit_sync_seconds_count")
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        got = list(ex.map(lambda i: gw.delete("j-okgc%04d" % i, tok, timeout=10), range(n)))
    syncs = metrics(admin).value("smc_gateway_audit_sync_seconds_count") - before
    assert [r.status for r in got] == [200] * n
    decisions = [e for e in gw.audit() if e.get("event") == "decision" and e.get("decision") == "allow"]
    assert len(decisions) == n
    assert len(sim.requests()) == n
    return syncs


def test_group_commit_shares_one_sync_among_concurrent_deletions(make_gateway, sim, keys):
    # Every deletion is on disk before it is forwarded; under load the writer
    # waits up to audit.group_commit_us between batches so that one fdatasync
    # covers many of them.
    n = 40
    syncs = concurrent_deletions_and_syncs(make_gateway, sim, keys, 100000, n)
    assert 1 <= syncs <= n // 4, syncs


def keepalive_deletions(gw, tok, jobs, first=None):
    """One caller deleting jobs one at a time on a keep-alive connection
    (after one warm-up DELETE, then first() if given); seconds it took."""
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        c.request("DELETE", "/jobs/j-ok1", headers={"Authorization": "Bearer " + tok})
        c.getresponse().read()
        if first is not None:
            first()
        t0 = time.time()
        for job in jobs:
            c.request("DELETE", "/jobs/" + job, headers={"Authorization": "Bearer " + tok})
            r = c.getresponse()
            r.read()
            assert r.status == 200
        return time.time() - t0
    finally:
        c.close()


def test_group_commit_window_does_not_delay_a_lone_caller(make_gateway, sim, keys):
    # One caller, one request at a time, on a keep-alive connection: its
    # decision is synced at once; the window only holds syncs under load.
    gw = make_gateway(sim.url, config=fast(workers=1, audit={"group_commit_us": 100000}))
    n = 10
    jobs = ["j-oklone%d" % i for i in range(n)]
    sim.add_jobs({j: "Ready" for j in jobs})
    took = keepalive_deletions(gw, keys.token(), jobs)
    # Held by the window, each would take about 100 ms.
    assert took < n * 0.1 / 2, took


def test_outcomes_ride_with_the_next_batch_and_still_reach_the_file_at_once(make_gateway, sim, keys):
    # A keep-alive caller's outcome entry (nothing waits for it) does not wake
    # the writer for a write(2) of its own while decisions keep coming: it
    # goes out with the next decision's batch. Every entry is still in the
    # file within AUDIT_LAZY_WRITE_MS (5 ms) of the last decision.
    admin = gwtest.free_port()
    gw = make_gateway(sim.url, config=fast(admin_listen="127.0.0.1:%d" % admin, workers=1))
    n = 20
    jobs = ["j-okride%d" % i for i in range(n)]
    sim.add_jobs({j: "Ready" for j in jobs})
    before = []

    def count_writes():
        time.sleep(0.2)
        before.append(metrics(admin).value("smc_gateway_audit_write_seconds_count"))

    keepalive_deletions(gw, keys.token(), jobs, first=count_writes)
    time.sleep(0.1)
    writes = metrics(admin).value("smc_gateway_audit_write_seconds_count") - before[0]
    # One write per decision (its outcome rides with the next), not two.
    assert writes <= n + 2, writes
    outcomes = [e for e in gw.audit() if e.get("event") == "outcome" and e["job_id"].startswith("j-okride")]
    assert len(outcomes) == n


def test_without_group_commit_window_concurrent_deletions_sync_more_often(make_gateway, sim, keys):
    """The other side of the test above: it can fail."""
    n = 40
    syncs = concurrent_deletions_and_syncs(make_gateway, sim, keys, 0, n)
    assert syncs > n // 4, syncs


def test_slow_syncs_are_reported_once_at_once_and_the_rest_summed_at_shutdown(make_gateway, sim, keys):
    # A stalled disk stalls every deletion in flight; the operator hears of
    # it. With audit.slow_sync_warn_ms at 0 every sync counts as slow: the
    # first is reported at once, the rest (within 10 s) in one line at exit.
    gw = make_gateway(sim.url, config=fast(workers=1, audit={"slow_sync_warn_ms": 0}))
    tok = keys.token()
    jobs = ["j-okslow%d" % i for i in range(5)]
    sim.add_jobs({j: "Ready" for j in jobs})
    keepalive_deletions(gw, tok, jobs)
    live = [json.loads(x) for x in gw.log().splitlines() if "fdatasync calls took" in x]
    assert len(live) == 1, live
    assert live[0]["level"] == "warn"
    assert live[0]["msg"].startswith("audit log %s: 1 fdatasync calls took 0 ms or more" % gw.audit_file)
    assert gw.stop() == 0
    lines = [json.loads(x) for x in gw.log().splitlines() if "fdatasync calls took" in x]
    assert len(lines) == 2, lines
    m = re.match(r"audit log .*: (\d+) fdatasync calls took 0 ms or more since the last report, the longest \d+ ms; "
                 r"requests waiting for their decision entries waited as long$", lines[1]["msg"])
    # One sync per decision at least (a lone keep-alive caller is never held).
    assert m and int(m.group(1)) >= len(jobs), lines[1]
    assert tok not in gw.log()


def test_fast_syncs_are_not_reported(make_gateway, sim, keys):
    """The other side of the test above: below the threshold nothing is said."""
    gw = make_gateway(sim.url, config=fast(workers=1, audit={"slow_sync_warn_ms": 60000}))
    jobs = ["j-okfast%d" % i for i in range(5)]
    sim.add_jobs({j: "Ready" for j in jobs})
    keepalive_deletions(gw, keys.token(), jobs)
    assert gw.stop() == 0
    assert "fdatasync calls took" not in gw.log()


def test_slow_sync_threshold_follows_a_reload(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(workers=1, audit={"slow_sync_warn_ms": 60000}))
    tok = keys.token()
    sim.add_jobs({"j-okrslow0": "Ready", "j-okrslow1": "Ready"})
    assert gw.delete("j-okrslow0", tok).status == 200
    time.sleep(0.3)  # its outcome entry is synced too (within 100 ms)
    assert "fdatasync calls took" not in gw.log()
    gw.config["audit"]["slow_sync_warn_ms"] = 0
    gw.write_config()
    sighup_and_wait(gw, "configuration reloaded")
    assert gw.delete("j-okrslow1", tok).status == 200
    end = time.time() + 2
    while "fdatasync calls took 0 ms or more" not in gw.log() and time.time() < end:
        time.sleep(0.02)
    assert "fdatasync calls took 0 ms or more" in gw.log()


def test_refusals_in_a_steady_stream_reach_the_disk_within_the_lazy_sync_time(make_gateway, sim, keys):
    # Refusals are not synced before answering (nothing is forwarded); they
    # must still reach the disk within 100 ms even when the queue never goes
    # quiet for that long.
    admin = gwtest.free_port()
    gw = make_gateway(sim.url, config=fast(admin_listen="127.0.0.1:%d" % admin, workers=1))
    tok = keys.token()
    before = metrics(admin).value("smc_gateway_audit_sync_seconds_count")
    refused = 0
    t_end = time.time() + 1.5
    while time.time() < t_end:
        r = gw.delete("j-zz9", tok)
        assert r.status == 403, r
        refused += 1
        time.sleep(0.03)
    syncs = metrics(admin).value("smc_gateway_audit_sync_seconds_count") - before
    assert syncs >= 5, (syncs, refused)


def test_full_upstream_queue_is_503_with_retry_after(make_gateway, sim, keys):
    # Upstream concurrency and queue are per worker thread: one worker here.
    gw = make_gateway(sim.url, config=fast(workers=1, limits={"max_upstream_concurrency": 1, "max_upstream_queue": 1}))
    sim.fault(mode="delay", delay_ms=1000, count=-1)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        a = ex.submit(gw.delete, "j-ok1", keys.token(), headers={"X-Request-Id": "q-a"})
        wait_until(lambda: len(sim.requests()) == 1, what="the first call upstream")
        b = ex.submit(gw.delete, "j-bp1ready", keys.token(), headers={"X-Request-Id": "q-b"})
        wait_until(lambda: metrics(gw.port).value("smc_gateway_upstream_queued") == 1, what="one request queued")
        t0 = time.time()
        c = gw.delete("j-bp2abcdef", keys.token(), headers={"X-Request-Id": "q-c"})
        assert c.status == 503, c
        assert time.time() - t0 < 0.9  # refused at once, not queued
        assert int(c.header("Retry-After")) >= 1
        assert c.json()["type"] == "urn:smc-gateway:problem:overloaded"
        assert not a.done() and not b.done()
        ra, rb = a.result(timeout=10), b.result(timeout=10)
    assert ra.status == 200 and rb.status == 200, (ra, rb)
    [e] = audit_entries(gw, "q-c")
    assert e["decision"] == "deny" and e["reason"] == "upstream_busy" and e["status"] == 503
    assert [q["params"]["JobId"] for q in sim.requests()] == ["j-ok1", "j-bp1ready"]
    assert "j-bp2abcdef" in sim.jobs()
    m = metrics(gw.port)
    assert m.value("smc_gateway_upstream_queue_full_total") == 1
    assert m.value("smc_gateway_decisions_total", decision="deny", reason="upstream_busy") == 1
    # One at a time: b was sent only after a's answer.
    reqs = sim.requests()
    assert reqs[1]["received_ms"] - reqs[0]["received_ms"] >= 900


# ---------------------------------------------------------------------------
# 6. Rate limits


def test_team_rate_limit_is_429_with_retry_after(make_gateway, sim, keys):
    sim.add_jobs({"j-ok2": "Ready", "j-ok3": "Ready"})
    gw = make_gateway(sim.url, config=fast(), policy=policy(rate_limit={"requests": 3, "per_seconds": 60}))
    for j in ("j-ok1", "j-ok2", "j-bp1ready"):
        r = gw.delete(j, keys.token())
        assert r.status == 200, r
    r = gw.delete("j-ok3", keys.token(), headers={"X-Request-Id": "rl-4"})
    assert r.status == 429, r
    ra = r.header("Retry-After")
    assert ra is not None and re.match(r"^[0-9]+$", ra) and int(ra) >= 1, ra
    assert int(ra) <= 60
    [e] = audit_entries(gw, "rl-4")
    assert e["decision"] == "deny" and e["reason"] == "rate_limited" and e["status"] == 429
    assert e["team"] == "migration"
    assert len(sim.requests()) == 3
    assert "j-ok3" in sim.jobs()
    # The limit is the team's: another team still gets through.
    r = gw.delete("j-ok3", keys.token(team="ops"), headers={"X-Change-Ticket": "CHG-1"})
    assert r.status == 200, r
    assert len(sim.requests()) == 4


def test_gateway_wide_upstream_rate_limit(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(upstream_rate_limit={"requests": 2, "per_seconds": 60}))
    assert gw.delete("j-ok1", keys.token()).status == 200
    r = gw.delete("j-bp1ready", keys.token(team="ops"), headers={"X-Change-Ticket": "CHG-1"})
    assert r.status == 200, r
    # A third call, from either team, is refused.
    r = gw.delete("j-bp2abcdef", keys.token(), headers={"X-Request-Id": "url-3"})
    assert r.status == 429, r
    assert re.match(r"^[0-9]+$", r.header("Retry-After")) and int(r.header("Retry-After")) >= 1
    [e] = audit_entries(gw, "url-3")
    assert e["decision"] == "deny" and e["reason"] == "upstream_rate_limited" and e["status"] == 429
    r = gw.delete("j-bp2abcdef", keys.token(team="ops"), headers={"X-Change-Ticket": "CHG-2"})
    assert r.status == 429, r
    assert len(sim.requests()) == 2
    assert "j-bp2abcdef" in sim.jobs()


# ---------------------------------------------------------------------------
# 7. CORS

DASH = "https://dash.example.com"


def test_cors_preflight_and_delete_for_allowed_and_disallowed_origins(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(cors={"allowed_origins": [DASH], "max_age_seconds": 600}))
    pre = {"Origin": DASH, "Access-Control-Request-Method": "DELETE",
           "Access-Control-Request-Headers": "authorization, x-change-ticket"}
    r = gwtest.request(gw.port, "OPTIONS", "/jobs/j-ok1", headers=pre)
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == DASH
    assert "DELETE" in [m.strip() for m in r.header("Access-Control-Allow-Methods").split(",")]
    allowed = {h.strip().lower() for h in r.header("Access-Control-Allow-Headers").split(",")}
    assert {"authorization", "x-request-id", "x-change-ticket"} <= allowed, allowed
    assert r.header("Access-Control-Max-Age") == "600"

    evil = dict(pre, Origin="https://evil.example.com")
    r = gwtest.request(gw.port, "OPTIONS", "/jobs/j-ok1", headers=evil)
    assert r.status == 403, r
    assert r.header("Content-Type") == "application/problem+json"
    assert not [k for k, _ in r.headers if k.lower().startswith("access-control-")], r.headers

    r = gw.delete("j-ok1", keys.token(), headers={"Origin": DASH})
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Origin") == DASH
    assert "x-request-id" in r.header("Access-Control-Expose-Headers").lower()

    r = gw.delete("j-bp1ready", keys.token(), headers={"Origin": "https://evil.example.com"})
    assert r.status == 200, r
    assert not [k for k, _ in r.headers if k.lower().startswith("access-control-")], r.headers
    # An error answer to the dashboard is readable by it too.
    r = gw.delete("j-zz1", keys.token(), headers={"Origin": DASH})
    assert r.status == 403 and r.header("Access-Control-Allow-Origin") == DASH
    # Preflights are never forwarded.
    assert [q["params"]["JobId"] for q in sim.requests()] == ["j-ok1", "j-bp1ready"]


def test_without_cors_options_is_405_and_no_cors_headers(gw, sim, keys):
    r = gwtest.request(gw.port, "OPTIONS", "/jobs/j-ok1",
                       headers={"Origin": DASH, "Access-Control-Request-Method": "DELETE"})
    assert r.status == 405, r
    assert r.header("Allow") == "DELETE"
    r = gw.delete("j-ok1", keys.token(), headers={"Origin": DASH})
    assert r.status == 200
    assert not [k for k, _ in r.headers if k.lower().startswith("access-control-")], r.headers


# ---------------------------------------------------------------------------
# 8. Trusted proxies


def test_x_forwarded_for_from_a_trusted_peer(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(trusted_proxies=["127.0.0.1/32"]))
    r = gw.delete("j-ok1", keys.token(), headers={"X-Forwarded-For": "198.51.100.9", "X-Request-Id": "xff-1"})
    assert r.status == 200, r
    entries = audit_entries(gw, "xff-1")
    assert len(entries) == 2
    for e in entries:
        assert e["client_ip"] == "198.51.100.9" and e["peer_ip"] == "127.0.0.1", e
    # Without the header the client is the peer, and peer_ip is left out.
    r = gw.delete("j-bp1ready", keys.token(), headers={"X-Request-Id": "xff-2"})
    assert r.status == 200, r
    for e in audit_entries(gw, "xff-2"):
        assert e["client_ip"] == "127.0.0.1" and "peer_ip" not in e, e


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(trusted_proxies=["10.0.0.0/8"]))
    r = gw.delete("j-ok1", keys.token(), headers={"X-Forwarded-For": "198.51.100.9", "X-Request-Id": "xff-u"})
    assert r.status == 200, r
    entries = audit_entries(gw, "xff-u")
    assert len(entries) == 2
    for e in entries:
        assert e["client_ip"] == "127.0.0.1" and "peer_ip" not in e, e
    assert "198.51.100.9" not in open(gw.audit_file).read()


def test_x_forwarded_for_takes_the_rightmost_untrusted_hop(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(trusted_proxies=["127.0.0.0/8"]))
    r = gw.delete("j-ok1", keys.token(),
                  headers={"X-Forwarded-For": "1.1.1.1, 2.2.2.2, 127.0.0.5", "X-Request-Id": "xff-r"})
    assert r.status == 200, r
    for e in audit_entries(gw, "xff-r"):
        assert e["client_ip"] == "2.2.2.2" and e["peer_ip"] == "127.0.0.1", e


def http_delete_bytes(job, token, rid):
    return ("DELETE /jobs/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Request-Id: %s\r\n"
            "Connection: close\r\n\r\n" % (job, token, rid)).encode()


def test_proxy_protocol_v1_from_a_trusted_peer(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(proxy_protocol=True, trusted_proxies=["127.0.0.0/8"]))
    out = gwtest.raw_request(gw.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" +
                             http_delete_bytes("j-ok1", keys.token(), "pp-1"))
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    entries = audit_entries(gw, "pp-1")
    assert len(entries) == 2
    for e in entries:
        assert e["client_ip"] == "203.0.113.7" and e["peer_ip"] == "127.0.0.1", e
    # A connection without the header is closed without an answer.
    out = gwtest.raw_request(gw.port, http_delete_bytes("j-bp1ready", keys.token(), "pp-2"))
    assert out == b"", out[:300]
    time.sleep(0.3)
    assert [q["params"]["JobId"] for q in sim.requests()] == ["j-ok1"], "a request without PROXY header was forwarded"
    assert "j-bp1ready" in sim.jobs()
    assert audit_entries(gw, "pp-2", wait=0.2) == []


def test_proxy_protocol_header_from_an_untrusted_peer_is_not_believed(make_gateway, sim, keys):
    gw = make_gateway(sim.url, config=fast(proxy_protocol=True, trusted_proxies=["10.0.0.0/8"]))
    out = gwtest.raw_request(gw.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" +
                             http_delete_bytes("j-ok1", keys.token(), "pp-u"))
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    for e in audit_entries(gw, "pp-u"):
        assert e["client_ip"] == "127.0.0.1" and "peer_ip" not in e, e


# ---------------------------------------------------------------------------
# 9. Privileges


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: checks the refusal to run as root")
def test_running_as_root_is_refused_without_allow_root(sim, keys, workdir):
    g = gwtest.Gateway(workdir, keys, sim.url, config={"allow_root": None}, start=False)
    assert "allow_root" not in json.load(open(g.config_file))
    rc, out = g.run_expect_exit()
    assert rc == 1, out
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    errs = [e for e in lines if e["level"] == "error" and "root" in e["msg"]]
    assert errs, out
    assert "allow_root" in errs[0]["msg"] and g.config_file in errs[0]["msg"]
    # It never listened.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", g.port), timeout=1).close()
    assert sim.requests() == []


def test_reload_to_another_upstream_while_calls_are_in_flight(make_gateway, sim, keys, workdir):
    # Calls in flight when upstream.endpoint changes finish where they
    # started; every call after the reload goes to the new upstream, also on
    # the curl handles the old calls give back.
    folder = os.path.join(workdir, "b")
    os.makedirs(folder, exist_ok=True)
    other = gwtest.Sim(folder, all_jobs=True)
    try:
        gw = make_gateway(sim.url, config=fast(workers=1))
        jobs = ["j-okflight%d" % i for i in range(4)]
        sim.add_jobs({j: "Ready" for j in jobs})
        sim.fault(latency_ms=800)
        tok = keys.token()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            inflight = [ex.submit(gw.delete, j, tok, timeout=10) for j in jobs]
            time.sleep(0.3)
            gw.config["upstream"]["endpoint"] = other.url
            gw.write_config()
            sighup_and_wait(gw, "configuration reloaded")
            assert gw.delete("j-okb0", tok).status == 200  # the new upstream, while the old calls run
            assert [f.result().status for f in inflight] == [200] * 4
        sim.fault(latency_ms=0)
        for i in range(1, 7):
            assert gw.delete("j-okb%d" % i, tok).status == 200
        assert sorted(r["params"]["JobId"] for r in sim.requests()) == sorted(jobs)
        assert [r["params"]["JobId"] for r in other.requests()] == ["j-okb%d" % i for i in range(7)]
    finally:
        other.stop()
