#!/usr/bin/python3
"""make soak: the gateway under sustained load, upstream faults and hostile
clients, with the audit log checked against what was served.

  SOAK_SECONDS=20 /usr/bin/python3 tests/soak/soak.py --build build

Three phases, each against its own gateway (fresh audit file, signed
checkpoints) and the SMC simulator (build/smc-sim --all-jobs-exist --quiet
--no-record):

  1. sustained   wrk, 256 connections, SOAK_SECONDS; zero non-2xx; simulator
                 ok == gateway 200s == audit allow decisions == audit
                 "deleted" outcomes (one of each per request ID); the chain
                 verifies with the checkpoint key; VmRSS flat.
  2. faults      a moderate wrk load (32 connections) runs while each fault
                 is injected in turn (upstream down, hang, slow, reset,
                 garbage, 503, throttling); probes get the documented status,
                 their outcome is audited, the gateway stays up, the load
                 gets an HTTP answer for every request (no socket errors).
  3. hostile     1,000 idle connections, 50 slowloris connections, 64 KiB
                 headers and an invalid-token flood (wrk, 64 connections, max
                 rate) while a legitimate caller keeps getting 200; the audit
                 log grows by bounded lines, not one per attack request.

Every assertion failure is collected; the run goes on to the next phase and
exits 1 at the end if anything failed. The summary table and all raw outputs
(wrk, logs, RSS samples, probes, configs) go to BUILD/soak/<date-time>/
(BUILD/soak/latest points at it). See tests/soak/README.md.
"""
import argparse
import concurrent.futures
import ctypes
import http.client as httpclient
import json
import math
import os
import random
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LOAD_LUA = os.path.join(HERE, "load.lua")

sys.path.insert(0, os.path.join(REPO, "tests", "blackbox"))
import gwtest  # noqa: E402  (Keys, Gateway, request, wait_port; its binaries are set in main)

# ---------------------------------------------------------------- utilities

KEEP_RUNS = 5          # run folders kept under BUILD/soak
FAILURES = []          # (phase, message)
CHILDREN = []          # every subprocess.Popen we started
PHASE = ["setup"]


def log(msg):
    sys.stdout.write("soak: %s\n" % msg)
    sys.stdout.flush()


def check(cond, msg):
    """A soft assertion: recorded, printed, and the run goes on."""
    if not cond:
        FAILURES.append((PHASE[0], msg))
        log("FAIL [%s] %s" % (PHASE[0], msg))
    return bool(cond)


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # The child goes when the driver goes, even on SIGKILL (PR_SET_PDEATHSIG).
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def spawn(args, out, env=None):
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
    CHILDREN.append(p)
    return p


def stop_proc(p, sig=signal.SIGTERM, timeout=30):
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(sig)
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None
    return p.returncode


def cleanup():
    for p in reversed(CHILDREN):
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except OSError:
                pass


def pct(values, q):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(math.ceil(q / 100.0 * len(v))) - 1))
    return v[k]


def ms(x):
    return "-" if x is None else ("%.1f ms" % x if x < 100 else "%.0f ms" % x)


def statuses_text(counter):
    return ",".join("%s:%d" % (k, counter[k]) for k in sorted(counter, key=str)) or "-"


def fs_type(path):
    p = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return p.stdout.strip() or "?"


def fixed_port():
    """A free port below the ephemeral range, so that no outgoing connection
    can take it while the simulator is down (it restarts on the same port)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 20000-32000")


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else hard
    want = min(want, 65536) if want != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        raise SystemExit("soak: open-file limit %d (hard %d) is below the %d the hostile phase needs" %
                         (soft, hard, need))
    return soft


# ------------------------------------------------------------ HTTP helpers


def http(port, method, path, headers=None, timeout=30):
    """(status, headers dict lower-case, body bytes, seconds) or raises."""
    c = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.monotonic()
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body, time.monotonic() - t0
    finally:
        c.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(port):
    st, _, body, _ = http(port, "GET", "/metrics", timeout=10)
    if st != 200:
        raise RuntimeError("/metrics answered %d" % st)
    out = []
    for line in body.decode().splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def msum(samples, name, **labels):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


def by_status(samples, route="jobs"):
    out = {}
    for n, l, v in samples:
        if n == "smc_gateway_requests_total" and l.get("route") == route and v:
            out[int(l["status"])] = out.get(int(l["status"]), 0) + int(v)
    return out


def listen_overflows():
    """The kernel's TcpExt ListenOverflows counter (system-wide)."""
    try:
        with open("/proc/net/netstat") as f:
            rows = [line.split() for line in f if line.startswith("TcpExt:")]
        return int(dict(zip(rows[0][1:], rows[1][1:]))["ListenOverflows"])
    except (OSError, LookupError, ValueError):
        return None


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler(threading.Thread):
    """VmRSS of a process once a second: [(seconds since start, kB)]."""

    def __init__(self, pid, path):
        super().__init__(daemon=True)
        self.pid, self.path = pid, path
        self.samples = []
        self.stop_ev = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        with open(self.path, "w") as f:
            f.write("seconds,vmrss_kb\n")
            while not self.stop_ev.is_set():
                kb = rss_kb(self.pid)
                if kb is None:
                    break
                t = time.monotonic() - self.t0
                self.samples.append((t, kb))
                f.write("%.2f,%d\n" % (t, kb))
                f.flush()
                self.stop_ev.wait(1.0)

    def stop(self):
        self.stop_ev.set()
        self.join(5)

    def max_kb(self):
        return max((kb for _, kb in self.samples), default=0)


# ----------------------------------------------------------- the processes


class Sim:
    """build/smc-sim for load: --all-jobs-exist --quiet --no-record, on a
    port that stays the same across restarts."""

    def __init__(self, build, folder, creds_file, port=None):
        self.bin = os.path.join(build, "smc-sim")
        self.folder, self.creds_file = folder, creds_file
        self.port = port or fixed_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        logf = open(os.path.join(self.folder, "smc-sim.log"), "ab")
        args = [self.bin, "--listen", "127.0.0.1:%d" % self.port, "--credentials", self.creds_file,
                "--all-jobs-exist", "--quiet", "--no-record"]
        end = time.time() + 10
        while True:
            self.proc = spawn(args, logf)
            try:
                gwtest.wait_port(self.port, self.proc, timeout=10)
                break
            except RuntimeError:
                # The port may be in TIME_WAIT use for a moment after a stop.
                if time.time() > end:
                    raise RuntimeError("smc-sim did not start on port %d (log %s)" % (self.port, logf.name))
                time.sleep(0.2)
        logf.close()

    def stop(self):
        rc = stop_proc(self.proc)
        self.proc = None
        return rc

    def ctl(self, method, path, body=None):
        r = gwtest.request(self.port, method, "/_sim/" + path, headers={"Content-Type": "application/json"},
                           body=json.dumps(body) if body is not None else None, timeout=10)
        if r.status >= 300:
            raise RuntimeError("simulator %s %s: %r" % (method, path, r))
        return r.json() if r.body else None

    def fault(self, **kw):
        return self.ctl("POST", "fault", kw)

    def stats(self):
        return self.ctl("GET", "stats")


POLICY = {"teams": {"migration": {"credential": "prod", "allow": ["DeleteReplicationJob"],
                                  "description": "make soak: every job"}}}


def base_config(ctx):
    return {
        "allow_root": True,
        "instance": "gw-soak",
        "log_level": "info",
        "limits": {"max_connections": 4096, "max_upstream_concurrency": 1024, "max_upstream_queue": 4096},
        "audit": {"signing_key_file": ctx.audit_key},
        "upstream": {"connect_timeout_ms": 1000, "timeout_ms": 5000, "deadline_ms": 8000, "max_retries": 2},
        "shutdown_timeout_ms": 30000,
    }


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Gateway(gwtest.Gateway):
    """gwtest.Gateway (config, policy and credentials written into folder),
    started with the driver's process hygiene."""

    def __init__(self, ctx, folder, upstream_url, config):
        os.makedirs(folder, exist_ok=True)
        super().__init__(folder, ctx.keys, upstream_url, policy=POLICY, config=merge(base_config(ctx), config),
                         start=False)
        self.start()

    def start(self):
        self.logf = open(self.log_file, "ab")
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        self.proc = spawn([gwtest.GATEWAY, "-c", self.config_file], self.logf, env=env)
        try:
            gwtest.wait_port(self.port, self.proc)
        except RuntimeError as e:
            raise RuntimeError("%s; gateway log:\n%s" % (e, self.log()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthz(self):
        try:
            return http(self.port, "GET", "/healthz", timeout=5)[0]
        except OSError as e:
            return "error: %s" % e

    def wait_idle(self, timeout=20):
        """Until no /jobs request is in flight; returns the metrics then."""
        end = time.time() + timeout
        while True:
            m = metrics(self.port)
            if msum(m, "smc_gateway_in_flight_requests") == 0 or time.time() > end:
                return m
            time.sleep(0.1)

    def log_levels(self):
        """'N lines: info a, warn b, error c' of the service log, and its error lines."""
        counts, errors = {}, []
        try:
            for line in self.log().splitlines():
                try:
                    lvl = json.loads(line).get("level", "?")
                except ValueError:
                    lvl = "not-json"
                counts[lvl] = counts.get(lvl, 0) + 1
                if lvl in ("error", "not-json") and len(errors) < 5:
                    errors.append(line[:300])
        except OSError:
            pass
        return "%d lines: %s" % (sum(counts.values()), ", ".join("%s %d" % kv for kv in sorted(counts.items()))), errors

    def log_tail(self, n=20):
        try:
            return "\n".join(self.log().splitlines()[-n:])
        except OSError:
            return ""


def report_log(gw, name):
    text, errors = gw.log_levels()
    log("%s: gateway log %s (%s)" % (name, text, gw.log_file))
    for e in errors:
        log("  %s" % e)


def run_wrk(ctx, name, port, conns, seconds, env_extra, path="/jobs/j-soak1"):
    """Start wrk in the background; returns (proc, output path)."""
    out = os.path.join(ctx.out, "wrk-%s.txt" % name)
    env = dict(os.environ, SOAK_PATH=path, **env_extra)
    f = open(out, "wb")
    p = spawn(["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s", "--latency", "-s", LOAD_LUA,
               "http://127.0.0.1:%d%s" % (port, path)], f, env=env)
    f.close()
    return p, out


def wrk_result(path):
    text = open(path, errors="replace").read()
    m = re.search(r"^SOAK-RESULT (.*)$", text, re.M)
    if not m:
        raise RuntimeError("no SOAK-RESULT line in %s:\n%s" % (path, text[-2000:]))
    r = {}
    for kv in m.group(1).split():
        k, v = kv.split("=", 1)
        if k == "statuses":
            r[k] = {int(a): int(b) for a, b in (x.split(":") for x in v.split(",") if x)}
        else:
            r[k] = int(v)
    r["socket_errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    r["ok"] = r["requests"] - r["status"]
    r["rate"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    return r


def stop_wrk(p, timeout=20):
    """wrk prints its summary (and load.lua's done()) on SIGINT."""
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def verify_audit(ctx, path, name):
    p = subprocess.run([os.path.join(ctx.build, "smc-gateway-audit"), "verify", "--pubkey", ctx.audit_pub, path],
                       capture_output=True, text=True)
    out = p.stdout + p.stderr
    with open(os.path.join(ctx.out, "audit-verify-%s.txt" % name), "w") as f:
        f.write(out)
    first = out.splitlines()[0] if out else ""
    check(p.returncode == 0 and first.startswith("OK ") and "WARNING" not in out,
          "smc-gateway-audit verify --pubkey failed on %s (exit %d): %s" % (path, p.returncode, out[:500]))
    return first


def request_id(tag):
    return "soak-%s-%s" % (tag, secrets.token_hex(6))


# ------------------------------------------------------------------ phase 1


def phase_sustained(ctx, table):
    PHASE[0] = "1 sustained"
    S = ctx.seconds
    folder = os.path.join(ctx.out, "p1-sustained")
    os.makedirs(folder)
    sim = Sim(ctx.build, folder, ctx.creds)
    sim.start()
    gw = Gateway(ctx, folder, sim.url, {})
    log("phase 1: wrk -c%d for %d s against 127.0.0.1:%d (audit %s)" % (ctx.p1_conns, S, gw.port, gw.audit_file))
    pre = 0
    st, _, body, _ = http(gw.port, "DELETE", "/jobs/j-soak1",
                          {"Authorization": "Bearer " + ctx.token, "X-Request-Id": request_id("p1-pre")})
    pre += 1
    if not check(st == 200, "pre-check DELETE answered %d: %r" % (st, body[:300])):
        stop_proc(gw.proc), sim.stop()
        return
    sampler = RssSampler(gw.proc.pid, os.path.join(ctx.out, "rss-p1.csv"))
    sampler.start()
    wrk, out = run_wrk(ctx, "p1-sustained", gw.port, ctx.p1_conns, S, {"SOAK_TOKEN": ctx.token})
    wrk.wait(S + 60)
    sampler.stop()
    rc = wrk.returncode
    r = wrk_result(out)
    check(rc == 0, "wrk exited %s" % rc)
    check(gw.alive(), "the gateway died under load (exit %s); log:\n%s" % (gw.proc.poll(), gw.log_tail()))
    check(r["status"] == 0, "wrk got %d non-2xx answers" % r["status"])
    check(r["socket_errors"] == 0, "wrk socket errors: connect %d read %d write %d timeout %d" %
          (r["connect"], r["read"], r["write"], r["timeout"]))

    # RSS: the second fifth (or 10-20 s) against the last fifth (or last 10 s).
    if S >= 30:
        early, late = (10.0, 20.0), (S - 10.0, S + 0.5)
    else:
        early, late = (S / 5.0, 2 * S / 5.0), (4 * S / 5.0, S + 0.5)
    e = [kb for t, kb in sampler.samples if early[0] <= t <= early[1]]
    l_ = [kb for t, kb in sampler.samples if late[0] <= t <= late[1]]
    rss_early, rss_late = (max(e) if e else 0), (max(l_) if l_ else 0)
    growth = rss_late - rss_early
    growth_pct = 100.0 * growth / rss_early if rss_early else 0.0
    rss_text = "max %.1f MiB (%g-%g s) -> %.1f MiB (%g-%g s): %+.1f MiB, %+.1f%%" % (
        rss_early / 1024.0, early[0], early[1], rss_late / 1024.0, late[0], min(late[1], S), growth / 1024.0,
        growth_pct)
    log("phase 1: RSS %s" % rss_text)
    check(e and l_, "too few RSS samples (%d)" % len(sampler.samples))
    check(not (growth > 0.10 * rss_early and growth > 4096),
          "gateway RSS grew by more than 10%% and 4 MiB under steady load: %s" % rss_text)

    m = gw.wait_idle()
    check(msum(m, "smc_gateway_in_flight_requests") == 0, "requests still in flight 20 s after the load")
    statuses = by_status(m)
    gw200 = statuses.get(200, 0)
    check(set(statuses) <= {200}, "the gateway answered /jobs with other statuses than 200: %s" % statuses)
    rc = gw.stop()
    check(rc == 0, "gateway exit status %s after SIGTERM; log:\n%s" % (rc, gw.log_tail()))
    report_log(gw, "phase 1")
    sim_stats = sim.stats()
    sim.stop()

    # The audit file: one allow decision and one deleted outcome per request ID.
    t0 = time.monotonic()
    open_ids, allow, deleted, other, checkpoints, bad_order = set(), 0, 0, 0, 0, 0
    lines = 0
    with open(gw.audit_file, "rb") as f:
        for raw in f:
            lines += 1
            ent = json.loads(raw)
            ev = ent.get("event")
            if ev == "checkpoint":
                checkpoints += 1
                continue
            rid = ent.get("request_id")
            if ev == "decision" and ent.get("decision") == "allow" and rid is not None:
                if rid in open_ids:
                    bad_order += 1
                open_ids.add(rid)
                allow += 1
            elif ev == "outcome" and rid is not None:
                if rid not in open_ids:
                    bad_order += 1
                else:
                    open_ids.discard(rid)
                if ent.get("status") == 200 and ent.get("result") == "deleted":
                    deleted += 1
                else:
                    other += 1
            else:
                other += 1
    log("phase 1: audit file read in %.1f s (%d lines)" % (time.monotonic() - t0, lines))
    verify = verify_audit(ctx, gw.audit_file, "p1")
    wrk_ok = r["ok"] + pre
    check(sim_stats["ok"] == gw200 == allow == deleted,
          "counts differ: simulator ok %d, gateway 200s %d, audit allow decisions %d, audit deleted outcomes %d" %
          (sim_stats["ok"], gw200, allow, deleted))
    check(sim_stats["rpc_requests"] == sim_stats["ok"],
          "simulator saw %d calls but answered ok %d" % (sim_stats["rpc_requests"], sim_stats["ok"]))
    check(wrk_ok <= gw200 <= wrk_ok + ctx.p1_conns,
          "wrk counted %d answers (+%d pre-check), the gateway served %d (at most %d may be in flight when wrk "
          "stops)" % (r["ok"], pre, gw200, ctx.p1_conns))
    check(not open_ids and bad_order == 0 and other == 0,
          "audit: %d decisions without outcome, %d out-of-order/duplicate entries, %d unexpected entries" %
          (len(open_ids), bad_order, other))
    ctx.audit_files.append(gw.audit_file)
    table.append({
        "phase": "1 sustained load", "what": "wrk -c%d %ds" % (ctx.p1_conns, S),
        "requests": "%d (%.0f/s)" % (r["requests"], r["rate"]),
        "statuses": "200:%d non2xx:%d sockerr:%d" % (r["ok"], r["status"], r["socket_errors"]),
        "p50": ms(r["p50_us"] / 1000.0), "p99": ms(r["p99_us"] / 1000.0),
        "rss": rss_text,
        "audit": "allow %d = deleted %d = gw 200 %d = sim ok %d; +%d checkpoints; %s" % (
            allow, deleted, gw200, sim_stats["ok"], checkpoints, verify),
    })


# ------------------------------------------------------------------ phase 2

FAULTS = [
    # name, sim fault (None: stop the simulator), status, audit result, expectations
    ("upstream down", None, 502, "failed", {"gateway_error": "connect_failed", "attempts": 3}),
    ("hang", {"mode": "hang"}, 504, "unknown", {"gateway_error": "timeout", "attempts": 1}),
    ("slow 2000 ms", {"mode": "delay", "delay_ms": 2000}, 504, "unknown", {"gateway_error": "timeout",
                                                                           "attempts": 1}),
    ("reset", {"mode": "reset"}, 502, "unknown", {"attempts": 1}),
    ("garbage", {"mode": "garbage"}, 502, "unknown", {"upstream_status": 200, "attempts": 1}),
    ("5xx 503", {"mode": "error", "status": 503, "code": "ServiceUnavailable"}, 502, "failed",
     {"upstream_status": 503, "upstream_code": "ServiceUnavailable", "attempts": 3}),
    ("throttling", {"mode": "error", "status": 400, "code": "Throttling.User"}, 429, "failed",
     {"upstream_code": "Throttling.User", "attempts": 3}),
]


def probe(ctx, port, tag):
    rid = request_id(tag)
    t0 = time.monotonic()
    try:
        st, hdrs, body, secs = http(port, "DELETE", "/jobs/j-probe%s" % secrets.token_hex(3),
                                    {"Authorization": "Bearer " + ctx.token, "X-Request-Id": rid}, timeout=30)
        return {"rid": rid, "status": st, "headers": hdrs, "body": body.decode(errors="replace"), "secs": secs}
    except OSError as e:
        return {"rid": rid, "status": None, "error": repr(e), "secs": time.monotonic() - t0}


def phase_faults(ctx, table):
    PHASE[0] = "2 faults"
    folder = os.path.join(ctx.out, "p2-faults")
    os.makedirs(folder)
    sim = Sim(ctx.build, folder, ctx.creds)
    sim.start()
    gw = Gateway(ctx, folder, sim.url, {"upstream": {"connect_timeout_ms": 1000, "timeout_ms": 1000,
                                                     "deadline_ms": 4000, "max_retries": 2}})
    sampler = RssSampler(gw.proc.pid, os.path.join(ctx.out, "rss-p2.csv"))
    sampler.start()
    hold = ctx.p2_hold
    log("phase 2: %d faults, each %.1f s under a wrk -c%d load (%d ms pause per request), %d probes each" %
        (len(FAULTS), hold, ctx.p2_conns, ctx.p2_delay_ms, ctx.p2_probes))
    probes_all = []  # (fault name, expected..., probe result)
    recovery_ids = []
    bg_total = {}
    for i, (name, fault, want_status, want_result, want) in enumerate(FAULTS):
        PHASE[0] = "2 fault: %s" % name
        tag = "p2-%d" % i
        wrk, out = run_wrk(ctx, "p2-%d-%s" % (i, re.sub(r"[^a-z0-9]+", "-", name)), gw.port, ctx.p2_conns, 3600,
                           {"SOAK_TOKEN": ctx.token, "SOAK_STATUSES": "1", "SOAK_DELAY_MS": str(ctx.p2_delay_ms)})
        time.sleep(1.0)
        if fault is None:
            sim.stop()
        else:
            sim.fault(count=-1, **fault)
        time.sleep(hold / 2.0)
        with concurrent.futures.ThreadPoolExecutor(ctx.p2_probes) as ex:
            probes = list(ex.map(lambda k: probe(ctx, gw.port, "%s-%d" % (tag, k)), range(ctx.p2_probes)))
        health = gw.healthz()
        alive = gw.alive()
        time.sleep(hold / 2.0)
        # Clear the fault: restart on the same port, or back to no fault.
        if fault is None:
            sim.start()
        else:
            sim.fault(mode="none")
        t_clear = time.monotonic()
        recovered = None
        while time.monotonic() - t_clear < 15:
            p = probe(ctx, gw.port, "%s-recover" % tag)
            recovery_ids.append(p["rid"])
            if p["status"] == 200:
                recovered = time.monotonic() - t_clear
                break
            time.sleep(0.2)
        time.sleep(0.5)
        stop_wrk(wrk)
        bg = wrk_result(out)
        for k, v in bg["statuses"].items():
            bg_total[k] = bg_total.get(k, 0) + v
        check(alive and gw.alive(), "the gateway died (exit %s); log:\n%s" % (gw.proc.poll(), gw.log_tail()))
        check(health == 200, "/healthz answered %s while the fault was on" % health)
        check(recovered is not None, "no 200 within 15 s after the fault was cleared")
        check(bg["socket_errors"] == 0,
              "the background load lost requests: connect %d read %d write %d timeout %d (of %d)" %
              (bg["connect"], bg["read"], bg["write"], bg["timeout"], bg["requests"]))
        check(bg["requests"] > 0, "the background load got no answer at all")
        got = {}
        for p in probes:
            got[p["status"]] = got.get(p["status"], 0) + 1
            probes_all.append((name, want_status, want_result, want, p))
            if not check(p["status"] == want_status, "probe %s: status %s, expected %d: %s" %
                         (p["rid"], p["status"], want_status, p.get("body", p.get("error", ""))[:300])):
                continue
            h, body = p["headers"], p["body"]
            check(h.get("x-request-id") == p["rid"], "probe %s: X-Request-Id %r" % (p["rid"], h.get("x-request-id")))
            check(h.get("content-type", "").startswith("application/problem+json"),
                  "probe %s: Content-Type %r" % (p["rid"], h.get("content-type")))
            try:
                pj = json.loads(body)
            except ValueError:
                pj = {}
            check(pj.get("status") == want_status and pj.get("request_id") == p["rid"],
                  "probe %s: problem body %s" % (p["rid"], body[:300]))
            if want_status == 429:
                ra = h.get("retry-after", "")
                check(ra.isdigit() and int(ra) >= 1, "probe %s: 429 without a usable Retry-After (%r)" %
                      (p["rid"], ra))
            if "gateway_error" in want and fault is None:
                check(pj.get("gateway_error") == want["gateway_error"],
                      "probe %s: problem gateway_error %r" % (p["rid"], pj.get("gateway_error")))
            if "upstream_code" in want:
                check(pj.get("upstream_code") == want["upstream_code"],
                      "probe %s: problem upstream_code %r" % (p["rid"], pj.get("upstream_code")))
        psecs = [p["secs"] * 1000 for p in probes]
        log("fault %-13s probes %s in %s..%s; background %d answers %s, %d socket errors; recovered %s" % (
            name, statuses_text(got), ms(min(psecs)), ms(max(psecs)), bg["requests"], statuses_text(bg["statuses"]),
            bg["socket_errors"], "in %.2f s" % recovered if recovered is not None else "NO"))
        table.append({
            "phase": "2 fault: %s" % name, "what": "%d probes, expect %d %s" % (ctx.p2_probes, want_status,
                                                                              want_result),
            "requests": "probes %d, bg %d" % (len(probes), bg["requests"]),
            "statuses": "probes %s; bg %s; sockerr %d" % (statuses_text(got), statuses_text(bg["statuses"]),
                                                          bg["socket_errors"]),
            "p50": ms(pct(psecs, 50)), "p99": ms(pct(psecs, 99)),
            "rss": "%.1f MiB" % (rss_kb(gw.proc.pid) / 1024.0) if gw.alive() else "-",
            "audit": "", "_rids": [p["rid"] for p in probes],
        })
    PHASE[0] = "2 faults"
    sampler.stop()
    m = gw.wait_idle()
    statuses = by_status(m)
    rc = gw.stop()
    check(rc == 0, "gateway exit status %s after SIGTERM; log:\n%s" % (rc, gw.log_tail()))
    report_log(gw, "phase 2")
    sim.stop()
    with open(os.path.join(ctx.out, "probes-p2.json"), "w") as f:
        json.dump([{"fault": n, "expected_status": ws, "expected_result": wr, "expected": w, "probe": p}
                   for n, ws, wr, w, p in probes_all], f, indent=1)

    # Audit: every allowed request has its outcome; the outcomes' statuses are
    # exactly what the gateway answered; every probe has the expected entries.
    entries = {}
    outcome_status, open_ids, bad, checkpoints, lines = {}, set(), 0, 0, 0
    with open(gw.audit_file, "rb") as f:
        for raw in f:
            lines += 1
            ent = json.loads(raw)
            ev, rid = ent.get("event"), ent.get("request_id")
            if ev == "checkpoint":
                checkpoints += 1
                continue
            if rid is not None and rid.startswith("soak-"):
                entries.setdefault(rid, []).append(ent)
            if ev == "decision" and ent.get("decision") == "allow":
                bad += rid in open_ids
                open_ids.add(rid)
            elif ev == "outcome":
                bad += rid not in open_ids
                open_ids.discard(rid)
                outcome_status[ent["status"]] = outcome_status.get(ent["status"], 0) + 1
            else:
                bad += 1
    verify = verify_audit(ctx, gw.audit_file, "p2")
    check(not open_ids and bad == 0, "audit: %d decisions without outcome, %d unexpected entries" %
          (len(open_ids), bad))
    check(outcome_status == statuses, "audit outcomes by status %s differ from the gateway's answers %s" %
          (outcome_status, statuses))
    missing = 0
    for name, want_status, want_result, want, p in probes_all:
        PHASE[0] = "2 fault: %s" % name
        es = entries.get(p["rid"], [])
        ok = [e["event"] for e in es] == ["decision", "outcome"] and es[0].get("decision") == "allow"
        if not check(ok, "probe %s: audit entries %s" % (p["rid"], es)):
            missing += 1
            continue
        o = es[1]
        exp = dict(want, status=want_status, result=want_result)
        diff = {k: (o.get(k), v) for k, v in exp.items() if o.get(k) != v}
        if name == "reset":
            diff.update({} if o.get("gateway_error") else {"gateway_error": (None, "present")})
        check(not diff, "probe %s: outcome entry differs (got, expected): %s; entry %s" % (p["rid"], diff, o))
    for rid in recovery_ids:
        es = entries.get(rid, [])
        if not check(len(es) == 2, "recovery probe %s: audit entries %s" % (rid, es)):
            missing += 1
    PHASE[0] = "2 faults"
    for row in table:
        if row.get("_rids"):
            row["audit"] = "%d/%d probes audited as expected" % (
                sum(1 for r in row["_rids"] if len(entries.get(r, [])) == 2), len(row["_rids"]))
            del row["_rids"]
    table.append({
        "phase": "2 faults (whole)", "what": "gateway answers by status",
        "requests": str(sum(statuses.values())), "statuses": "gw %s; bg wrk %s" % (statuses_text(statuses),
                                                                                 statuses_text(bg_total)),
        "p50": "", "p99": "", "rss": "max %.1f MiB" % (sampler.max_kb() / 1024.0),
        "audit": "%d lines, outcomes = answers by status: %s; %d checkpoints; %s" % (
            lines, "yes" if outcome_status == statuses else "NO", checkpoints, verify),
    })
    ctx.audit_files.append(gw.audit_file)


# ------------------------------------------------------------------ phase 3


class Legit(threading.Thread):
    """A legitimate caller: one DELETE after another, a new connection each."""

    def __init__(self, ctx, port):
        super().__init__(daemon=True)
        self.ctx, self.port = ctx, port
        self.results = []  # (start monotonic, seconds, status or error, rid)
        self.stop_ev = threading.Event()

    def run(self):
        n = 0
        while not self.stop_ev.is_set():
            n += 1
            rid = "soak-p3-legit-%d-%s" % (n, secrets.token_hex(3))
            t0 = time.monotonic()
            try:
                st = http(self.port, "DELETE", "/jobs/j-legit%d" % n,
                          {"Authorization": "Bearer " + self.ctx.token, "X-Request-Id": rid}, timeout=30)[0]
            except OSError as e:
                st = "error: %r" % e
            self.results.append((t0, time.monotonic() - t0, st, rid))
            self.stop_ev.wait(0.01)


class IdleHolder(threading.Thread):
    """Keep n raw connections open that never send a byte. The gateway cuts a
    connection that sends no complete head within limits.header_timeout_ms
    (counted from accept), so a cut one is reopened at once, as an attacker
    would. Non-blocking connects, at most `pending` at a time (more would
    overflow the listen backlog and measure SYN retransmits instead)."""

    def __init__(self, port, n, pending=64):
        super().__init__(daemon=True)
        self.port, self.n, self.pending_max = port, n, pending
        self.stop_ev = threading.Event()
        self.opened = 0          # connects completed
        self.cut = 0             # closed by the server
        self.lifetimes = []      # seconds from connect to the server's close
        self.errors = []
        self.held = 0            # established right now
        self.max_held = 0
        self.t_full = None       # seconds until n were held at once
        self.still_open = 0

    def run(self):
        poller = select.poll()
        socks = {}               # fd -> [socket, connected_at or None]
        t0 = time.monotonic()
        while not self.stop_ev.is_set():
            pending = sum(1 for v in socks.values() if v[1] is None)
            while len(socks) < self.n and pending < self.pending_max:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", self.port))
                if err not in (0, 115):  # EINPROGRESS
                    self.errors.append(os.strerror(err))
                    s.close()
                    break
                socks[s.fileno()] = [s, None]
                poller.register(s.fileno(), select.POLLOUT)
                pending += 1
            for fd, ev in poller.poll(50):
                s, since = socks[fd]
                now = time.monotonic()
                if since is None:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self.errors.append(os.strerror(err))
                        poller.unregister(fd)
                        del socks[fd]
                        s.close()
                        continue
                    socks[fd][1] = now
                    self.opened += 1
                    poller.modify(fd, select.POLLIN)
                    continue
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    continue
                self.cut += 1
                self.lifetimes.append(now - since)
                poller.unregister(fd)
                del socks[fd]
                s.close()
            self.held = sum(1 for v in socks.values() if v[1] is not None)
            self.max_held = max(self.max_held, self.held)
            if self.t_full is None and self.held >= self.n:
                self.t_full = time.monotonic() - t0
        self.still_open = sum(1 for v in socks.values() if v[1] is not None)
        for s, _ in socks.values():
            s.close()


class Slowloris(threading.Thread):
    """n connections trickling a request head, a byte every `every` seconds;
    records when the server closes each one (after its first byte)."""

    def __init__(self, port, n, every, give_up):
        super().__init__(daemon=True)
        self.port, self.n, self.every, self.give_up = port, n, every, give_up
        self.closed_after = []
        self.max_sent = 0
        self.errors = []
        self.still_open = n

    def run(self):
        head = b"DELETE /jobs/j-slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
        conns = {}  # fd -> dict(sock, sent, first, next)
        for _ in range(self.n):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError as e:
                self.errors.append(repr(e))
                continue
            s.setblocking(False)
            conns[s.fileno()] = {"sock": s, "sent": 0, "first": None, "next": 0.0}
        poller = select.poll()
        for fd in conns:
            poller.register(fd, select.POLLIN)
        t_start = time.monotonic()

        def closed(fd, now):
            c = conns.pop(fd)
            poller.unregister(fd)
            self.closed_after.append(now - (c["first"] if c["first"] is not None else now))
            c["sock"].close()

        while conns and time.monotonic() - t_start < self.give_up:
            now = time.monotonic()
            for fd, c in list(conns.items()):
                if now < c["next"]:
                    continue
                try:
                    c["sock"].send(head[c["sent"]:c["sent"] + 1])
                    c["sent"] += 1
                    self.max_sent = max(self.max_sent, c["sent"])
                    if c["first"] is None:
                        c["first"] = now
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    closed(fd, now)
                    continue
                c["next"] = now + self.every
            for fd, ev in poller.poll(50):
                if fd not in conns:
                    continue
                try:
                    data = conns[fd]["sock"].recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    closed(fd, time.monotonic())
        self.still_open = len(conns)
        for c in conns.values():
            c["sock"].close()


def big_header_request(ctx, port, one_header):
    """64 KiB of request head with a valid token: 4xx or closed, never 200."""
    rid = request_id("p3-bighdr")
    if one_header:
        pad = b"X-Pad: " + b"a" * 65536 + b"\r\n"
    else:
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(66))
    req = (b"DELETE /jobs/j-bighdr HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + ctx.token.encode() +
           b"\r\nX-Request-Id: " + rid.encode() + b"\r\n" + pad + b"\r\n")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = b""
    how = "answered"
    try:
        try:
            s.sendall(req)
        except OSError:
            how = "closed while sending"
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                how = "no answer in 5 s"
                break
            except OSError:
                how = "reset"
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
    status = int(m.group(1)) if m else None
    return {"rid": rid, "status": status, "how": how if status is None else "answered", "bytes": len(req)}


def phase_hostile(ctx, table):
    PHASE[0] = "3 hostile"
    folder = os.path.join(ctx.out, "p3-hostile")
    os.makedirs(folder)
    sim = Sim(ctx.build, folder, ctx.creds)
    sim.start()
    T = ctx.header_timeout_ms
    gw = Gateway(ctx, folder, sim.url, {"limits": {"header_timeout_ms": T}})
    sampler = RssSampler(gw.proc.pid, os.path.join(ctx.out, "rss-p3.csv"))
    sampler.start()
    L, F = ctx.p3_seconds, ctx.p3_flood_seconds
    log("phase 3: %d s: %d idle connections, %d slowloris (header_timeout_ms %d), 64 KiB heads, invalid-token "
        "flood wrk -c%d for %d s, a legitimate caller throughout" % (L, ctx.p3_idle, ctx.p3_slowloris, T,
                                                                     ctx.p3_flood_conns, F))
    t_phase = time.monotonic()

    overflows0 = listen_overflows()
    # 1,000 idle connections, held (reopened when cut) for the whole phase.
    idle = IdleHolder(gw.port, ctx.p3_idle)
    idle.start()
    gauge = []
    end = time.time() + 15
    while time.time() < end and idle.held < ctx.p3_idle:
        time.sleep(0.05)
    gauge.append(msum(metrics(gw.port), "smc_gateway_open_connections"))
    # (Cut after header_timeout_ms and reopened: a few may be reconnecting.)
    check(idle.max_held >= 0.95 * ctx.p3_idle, "at most %d of %d idle connections were open at once within 15 s "
          "(errors: %s)" % (idle.max_held, ctx.p3_idle, idle.errors[:3]))
    check(gauge[-1] >= 0.95 * ctx.p3_idle, "the gateway reports %d open connections while %d idle ones are held" %
          (gauge[-1], idle.held))

    legit = Legit(ctx, gw.port)
    legit.start()
    time.sleep(1.0)

    # Invalid tokens from Python first: among the first 10 refusals of the
    # minute, so recorded one by one.
    bad_probes = []
    for tok in (ctx.bad_token, "not-a-jwt", ctx.bad_token + "x"):
        rid = request_id("p3-badtoken")
        st, h, body, _ = http(gw.port, "DELETE", "/jobs/j-soak1", {"Authorization": "Bearer " + tok,
                                                                   "X-Request-Id": rid})
        bad_probes.append(rid)
        check(st == 401 and (h.get("www-authenticate") or "").startswith("Bearer error=\"invalid_token\""),
              "invalid token probe %s: %d %s %r" % (rid, st, h.get("www-authenticate"), body[:200]))

    slow = Slowloris(gw.port, ctx.p3_slowloris, 0.5, 2 * T / 1000.0 + 3)
    slow.start()
    m0 = metrics(gw.port)
    syncs0 = msum(m0, "smc_gateway_audit_sync_seconds_count")
    t_flood0 = time.monotonic()
    flood, flood_out = run_wrk(ctx, "p3-flood", gw.port, ctx.p3_flood_conns, F, {"SOAK_TOKEN": ctx.bad_token})
    time.sleep(min(1.0, F / 3.0))
    big = [big_header_request(ctx, gw.port, k % 2 == 0) for k in range(ctx.p3_bighdr)]
    health_during = gw.healthz()
    gauge.append(msum(metrics(gw.port), "smc_gateway_open_connections"))
    flood.wait(F + 30)
    t_flood1 = time.monotonic()
    m1 = metrics(gw.port)
    syncs1 = msum(m1, "smc_gateway_audit_sync_seconds_count")
    fr = wrk_result(flood_out)
    slow.join(2 * T / 1000.0 + 10)
    rest = L - (time.monotonic() - t_phase)
    if rest > 0:
        time.sleep(rest)
    legit.stop_ev.set()
    legit.join(40)
    idle.stop_ev.set()
    idle.join(10)
    overflows1 = listen_overflows()
    overflows = overflows1 - overflows0 if overflows0 is not None and overflows1 is not None else None
    health_after = gw.healthz()
    alive = gw.alive()
    sampler.stop()
    phase_secs = time.monotonic() - t_phase
    m = gw.wait_idle() if alive else []
    rc = gw.stop()
    report_log(gw, "phase 3")
    sim.stop()

    check(alive, "the gateway died (exit %s); log:\n%s" % (gw.proc.poll(), gw.log_tail()))
    check(rc == 0, "gateway exit status %s after SIGTERM; log:\n%s" % (rc, gw.log_tail()))
    check(health_during == 200 and health_after == 200, "/healthz answered %s during, %s after the attack" %
          (health_during, health_after))

    # Legitimate caller.
    res = legit.results
    lat = [x[1] * 1000 for x in res]
    lat_flood = [x[1] * 1000 for x in res if t_flood0 <= x[0] <= t_flood1]
    lstat = {}
    for x in res:
        lstat[x[2]] = lstat.get(x[2], 0) + 1
    check(res and all(x[2] == 200 for x in res), "the legitimate caller got %s" % statuses_text(lstat))
    check(len(lat_flood) >= max(1, int(t_flood1 - t_flood0)),
          "the legitimate caller completed only %d requests during the %.1f s flood" % (len(lat_flood),
                                                                                        t_flood1 - t_flood0))
    check(max(lat or [0]) < 5000, "a legitimate request took %.0f ms" % max(lat or [0]))
    log("legitimate caller: %d requests %s, p50 %s p99 %s max %s; during the flood %d, p50 %s p99 %s" % (
        len(res), statuses_text(lstat), ms(pct(lat, 50)), ms(pct(lat, 99)), ms(max(lat or [0])), len(lat_flood),
        ms(pct(lat_flood, 50)), ms(pct(lat_flood, 99))))

    # Slowloris: every connection closed by the server within 2x the timeout.
    closes = sorted(slow.closed_after)
    check(not slow.errors, "slowloris connections failed to open: %s" % slow.errors[:3])
    check(slow.still_open == 0 and len(closes) == ctx.p3_slowloris,
          "%d of %d slowloris connections were still open after %.1f s" % (slow.still_open, ctx.p3_slowloris,
                                                                           slow.give_up))
    late = [c for c in closes if c > 2 * T / 1000.0]
    check(not late, "%d slowloris connections closed later than 2 x header_timeout_ms (%d ms): %s" %
          (len(late), T, ["%.2f s" % c for c in late[:5]]))
    slow_text = "%d/%d closed after %.2f..%.2f s (limit %.1f s)" % (
        len(closes), ctx.p3_slowloris, closes[0] if closes else 0, closes[-1] if closes else 0, 2 * T / 1000.0)
    lt = sorted(idle.lifetimes)
    idle_text = "held %d at once (all %d after %s), %d cut by the server after %.2f..%.2f s and reopened, %d open " \
        "at the end; gateway gauge max %d; listen queue overflows (kernel, whole machine) %s" % (
            idle.max_held, ctx.p3_idle, "%.1f s" % idle.t_full if idle.t_full is not None else "never", idle.cut,
            lt[0] if lt else 0, lt[-1] if lt else 0, idle.still_open, max(gauge),
            "?" if overflows is None else overflows)
    log("idle connections: %s" % idle_text)
    check(not idle.errors, "idle connections: %d connect errors: %s" % (len(idle.errors), idle.errors[:3]))
    log("slowloris: %s, %d head bytes sent per connection at most" % (slow_text, slow.max_sent))
    check(msum(m, "smc_gateway_header_timeouts_total") >= ctx.p3_slowloris if m else True,
          "smc_gateway_header_timeouts_total is %d, %d slowloris connections were cut" %
          (msum(m, "smc_gateway_header_timeouts_total"), ctx.p3_slowloris))

    # 64 KiB heads.
    bstat = {}
    for b in big:
        key = b["status"] if b["status"] is not None else b["how"]
        bstat[key] = bstat.get(key, 0) + 1
        check(b["status"] is None or 400 <= b["status"] < 500,
              "a %d-byte request head answered %s" % (b["bytes"], b["status"]))
    log("64 KiB heads: %s" % statuses_text(bstat))

    # Flood.
    check(fr["ok"] == 0, "%d invalid-token requests were answered 2xx" % fr["ok"])
    log("invalid-token flood: %d requests in %.1f s = %.0f/s (target 10,000/s%s), %d non-2xx, %d socket errors, "
        "p50 %s p99 %s" % (fr["requests"], fr["duration_us"] / 1e6, fr["rate"],
                           "" if fr["rate"] >= 10000 else ": not reached on this machine", fr["status"],
                           fr["socket_errors"], ms(fr["p50_us"] / 1000.0), ms(fr["p99_us"] / 1000.0)))
    flood_statuses = by_status(m)

    # Audit: bounded lines for the attack.
    allow_ids, outcome_ids, denies, summaries, checkpoints, other = set(), set(), [], [], 0, []
    lines = 0
    with open(gw.audit_file, "rb") as f:
        for raw in f:
            lines += 1
            ent = json.loads(raw)
            ev = ent.get("event")
            if ev == "checkpoint":
                checkpoints += 1
            elif ev == "refusals_suppressed":
                summaries.append(ent)
            elif ev == "decision" and ent.get("decision") == "allow":
                allow_ids.add(ent["request_id"])
            elif ev == "outcome" and ent.get("result") == "deleted":
                outcome_ids.add(ent["request_id"])
            elif ev == "decision" and ent.get("decision") == "deny":
                denies.append(ent)
            else:
                other.append(ent)
    verify = verify_audit(ctx, gw.audit_file, "p3")
    legit_ids = set(x[3] for x in res if x[2] == 200)
    check(legit_ids <= allow_ids and legit_ids <= outcome_ids,
          "%d legitimate 200s have no allow decision, %d no outcome in the audit" %
          (len(legit_ids - allow_ids), len(legit_ids - outcome_ids)))
    big_ids = set(b["rid"] for b in big)
    check(not (big_ids & allow_ids), "a 64 KiB head was allowed: %s" % (big_ids & allow_ids))
    check(allow_ids == outcome_ids and not other,
          "audit: %d allow decisions, %d deleted outcomes, %d unexpected entries %s" %
          (len(allow_ids), len(outcome_ids), len(other), other[:2]))
    legit_entries = len(allow_ids) + len(outcome_ids)
    attack_lines = len(denies) + len(summaries)
    ips = set(e.get("client_ip") for e in denies + summaries)
    minutes = int(math.ceil(phase_secs / 60.0)) + 1
    bound = max(1, len(ips)) * (10 * minutes + minutes)
    check(attack_lines <= bound, "the attack added %d audit lines (%d refusals, %d summaries) from %d client "
          "addresses: more than %d" % (attack_lines, len(denies), len(summaries), len(ips), bound))
    check(summaries, "no refusals_suppressed entry after the flood")
    denied_ids = set(e.get("request_id") for e in denies)
    check(set(bad_probes) <= denied_ids, "invalid-token probes not recorded one by one: %s" %
          (set(bad_probes) - denied_ids))
    suppressed = sum(int(e.get("count", 0)) for e in summaries)
    refused_total = len(denies) + suppressed
    sent_min = fr["requests"] + len(bad_probes)
    check(sent_min <= refused_total <= sent_min + ctx.p3_flood_conns,
          "refusals accounted for in the audit (%d recorded + %d summarized) differ from the invalid-token "
          "requests sent (%d, + up to %d in flight when wrk stopped)" % (len(denies), suppressed, sent_min,
                                                                        ctx.p3_flood_conns))
    check(flood_statuses.get(401, 0) == refused_total,
          "the gateway answered 401 %d times, the audit accounts for %d refusals" %
          (flood_statuses.get(401, 0), refused_total))
    syncs = syncs1 - syncs0
    legit_in_flood = sum(1 for x in res if t_flood0 - 1 <= x[0] <= t_flood1 + 1)
    check(syncs <= 2 * legit_in_flood + 20,
          "%d audit syncs during the flood for %d legitimate requests: refusals are being synced" %
          (syncs, legit_in_flood))
    log("audit: %d lines: %d legitimate entries, %d attack lines (%d refusals, %d summaries of %d suppressed; "
        "bound %d), %d checkpoints; %d fsyncs during the flood" % (lines, legit_entries, attack_lines, len(denies),
                                                                     len(summaries), suppressed, bound, checkpoints,
                                                                     syncs))
    rss_max = sampler.max_kb()
    table.extend([
        {"phase": "3 idle connections", "what": "%d raw sockets, %.0f s" % (ctx.p3_idle, phase_secs),
         "requests": "-", "statuses": idle_text,
         "p50": "", "p99": "", "rss": "max %.1f MiB (phase)" % (rss_max / 1024.0), "audit": "-"},
        {"phase": "3 slowloris", "what": "%d conns, 1 byte/0.5 s" % ctx.p3_slowloris, "requests": "-",
         "statuses": slow_text, "p50": "", "p99": "", "rss": "", "audit": "-"},
        {"phase": "3 64 KiB heads", "what": "%d requests, valid token" % len(big), "requests": str(len(big)),
         "statuses": statuses_text(bstat), "p50": "", "p99": "", "rss": "", "audit": "none allowed"},
        {"phase": "3 invalid-token flood", "what": "wrk -c%d %ds" % (ctx.p3_flood_conns, F),
         "requests": "%d (%.0f/s%s)" % (fr["requests"], fr["rate"], "" if fr["rate"] >= 10000 else
                                       " < 10k/s target"),
         "statuses": "non2xx %d, 2xx %d, sockerr %d" % (fr["status"], fr["ok"], fr["socket_errors"]),
         "p50": ms(fr["p50_us"] / 1000.0), "p99": ms(fr["p99_us"] / 1000.0), "rss": "",
         "audit": "%d attack lines <= %d (%d recorded + %d summaries covering %d); %d fsyncs" % (
             attack_lines, bound, len(denies), len(summaries), suppressed, syncs)},
        {"phase": "3 legitimate caller", "what": "sequential, new conn each", "requests": str(len(res)),
         "statuses": statuses_text(lstat) + "; in flood %d" % len(lat_flood),
         "p50": "%s (flood %s)" % (ms(pct(lat, 50)), ms(pct(lat_flood, 50))),
         "p99": "%s (flood %s)" % (ms(pct(lat, 99)), ms(pct(lat_flood, 99))), "rss": "",
         "audit": "%d lines total, %d legit entries, %d checkpoints; %s" % (lines, legit_entries, checkpoints,
                                                                             verify)},
    ])
    ctx.audit_files.append(gw.audit_file)


# ------------------------------------------------------------------- main


def print_table(rows, out):
    cols = [("phase", "phase"), ("what", "what"), ("requests", "requests"), ("statuses", "statuses"),
            ("p50", "p50"), ("p99", "p99"), ("rss", "RSS"), ("audit", "audit lines")]
    widths = {k: max(len(t), *(len(str(r.get(k, ""))) for r in rows)) if rows else len(t) for k, t in cols}
    # Keep the table readable: the last columns wrap freely.
    for k in ("audit", "rss", "statuses"):
        widths[k] = min(widths[k], 60)
    lines = [" | ".join(t.ljust(widths[k]) for k, t in cols)]
    lines.append("-+-".join("-" * widths[k] for k, _ in cols))
    for r in rows:
        lines.append(" | ".join(str(r.get(k, "")).ljust(widths[k]) for k, _ in cols))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out, "w") as f:
        f.write(text)


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--phases", default="1,2,3", help="which phases to run (default 1,2,3)")
    args = ap.parse_args()

    ctx = Ctx()
    ctx.build = os.path.abspath(args.build)
    os.environ["GW_BUILD"] = ctx.build
    gwtest.BUILD = ctx.build
    gwtest.GATEWAY = os.path.join(ctx.build, "smc-gateway")
    gwtest.SIM = os.path.join(ctx.build, "smc-sim")

    try:
        S = int(os.environ.get("SOAK_SECONDS", "60"))
    except ValueError:
        raise SystemExit("soak: SOAK_SECONDS must be a whole number")
    if S < 5:
        raise SystemExit("soak: SOAK_SECONDS must be at least 5")
    ctx.seconds = S
    ctx.p1_conns = 256
    ctx.p2_conns, ctx.p2_delay_ms, ctx.p2_probes = 32, 20, 5
    ctx.p2_hold = max(2.0, S / 10.0)
    ctx.header_timeout_ms = 3000
    ctx.p3_idle, ctx.p3_slowloris, ctx.p3_bighdr, ctx.p3_flood_conns = 1000, 50, 6, 64
    ctx.p3_flood_seconds = max(3, int(round(S / 10.0)))
    ctx.p3_seconds = max(ctx.p3_flood_seconds + 4, 2 * ctx.header_timeout_ms // 1000 + 4, S // 4)
    phases = set(x.strip() for x in args.phases.split(","))

    for prog in ("smc-gateway", "smc-gateway-audit", "smc-sim"):
        if not os.access(os.path.join(ctx.build, prog), os.X_OK):
            raise SystemExit("soak: %s/%s is missing: run make all first" % (ctx.build, prog))
    for tool in ("wrk", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit("soak: %s is missing (sh tests/deps.sh bench installs wrk)" % tool)
    nofile = raise_nofile(ctx.p3_idle + ctx.p3_slowloris + 2 * 1024)

    base = os.path.join(ctx.build, "soak")
    os.makedirs(base, exist_ok=True)
    fst = fs_type(base)
    if fst in ("tmpfs", "ramfs"):
        raise SystemExit("soak: %s is on %s: the audit file must be on a real disk (fdatasync must cost what it "
                         "costs); build elsewhere (BUILD=...)" % (base, fst))
    # Keep the last few runs (a failed run keeps its audit files: up to 1 GB).
    runs = sorted(d for d in os.listdir(base) if re.match(r"^\d{8}-\d{6}(-\d+)?$", d))
    for d in runs[:-(KEEP_RUNS - 1)] if len(runs) >= KEEP_RUNS else []:
        shutil.rmtree(os.path.join(base, d), ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if os.path.exists(os.path.join(base, stamp)):
        stamp += "-%d" % os.getpid()
    ctx.out = os.path.join(base, stamp)
    os.makedirs(ctx.out)
    os.chmod(ctx.out, 0o700)
    link = os.path.join(base, "latest")
    if os.path.islink(link) or not os.path.exists(link):
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass
        os.symlink(stamp, link)
    ctx.audit_files = []

    sizes = ("SOAK_SECONDS=%d: phase 1 wrk -t2 -c%d for %d s; phase 2 %d faults x %.1f s under wrk -c%d "
             "(%d ms pause), %d probes each, upstream timeout 1000 ms; phase 3 %d s: %d idle, %d slowloris "
             "(header_timeout_ms %d), %d 64 KiB heads, flood wrk -c%d for %d s; RSS windows %s; open files %s; "
             "audit on %s (%s)" % (
                 S, ctx.p1_conns, S, len(FAULTS), ctx.p2_hold, ctx.p2_conns, ctx.p2_delay_ms, ctx.p2_probes,
                 ctx.p3_seconds, ctx.p3_idle, ctx.p3_slowloris, ctx.header_timeout_ms, ctx.p3_bighdr,
                 ctx.p3_flood_conns, ctx.p3_flood_seconds,
                 "10-20 s vs last 10 s" if S >= 30 else "2nd fifth vs last fifth", nofile, fst, ctx.out))
    log(sizes)
    with open(os.path.join(ctx.out, "sizes.txt"), "w") as f:
        f.write(sizes + "\n")

    def on_signal(sig, frame):
        raise KeyboardInterrupt("signal %d" % sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t_start = time.monotonic()
    table = []
    interrupted = False
    try:
        # Keys: the identity provider's RS256 pair (gwtest.Keys), the audit
        # checkpoint key (Ed25519, openssl, 0600), credentials shared with the
        # simulator.
        kd = os.path.join(ctx.out, "keys")
        os.makedirs(kd, mode=0o700)
        ctx.keys = gwtest.Keys(kd)
        ctx.audit_key = os.path.join(kd, "audit-ed25519.key")
        ctx.audit_pub = os.path.join(kd, "audit-ed25519.pub.pem")
        old = os.umask(0o077)
        try:
            subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", ctx.audit_key], check=True,
                           capture_output=True)
        finally:
            os.umask(old)
        os.chmod(ctx.audit_key, 0o600)
        subprocess.run(["openssl", "pkey", "-in", ctx.audit_key, "-pubout", "-out", ctx.audit_pub], check=True,
                       capture_output=True)
        ctx.creds = os.path.join(kd, "credentials.json")
        with open(ctx.creds, "w") as f:
            json.dump({"prod": {"access_key_id": gwtest.ACCESS_KEY_ID,
                                "access_key_secret": gwtest.ACCESS_KEY_SECRET}}, f)
        os.chmod(ctx.creds, 0o600)
        exp = int(time.time()) + 20 * S + 3600
        ctx.token = ctx.keys.token(exp=exp)
        # Well-formed, signed by another key: the full verification path fails.
        ctx.bad_token = ctx.keys.token(key=ctx.keys.rsa2, exp=exp)

        for n, fn in (("1", phase_sustained), ("2", phase_faults), ("3", phase_hostile)):
            if n not in phases:
                continue
            t0 = time.monotonic()
            try:
                fn(ctx, table)
            except KeyboardInterrupt:
                raise
            except Exception:
                check(False, "phase aborted:\n%s" % traceback.format_exc())
            finally:
                cleanup()
            log("phase %s done in %.0f s" % (n, time.monotonic() - t0))
    except KeyboardInterrupt:
        interrupted = True
        FAILURES.append(("interrupted", "stopped by a signal"))
    finally:
        cleanup()

    log("summary (%.0f s in all; raw outputs in %s):" % (time.monotonic() - t_start, ctx.out))
    print_table(table, os.path.join(ctx.out, "summary.txt"))
    if FAILURES:
        with open(os.path.join(ctx.out, "failures.txt"), "w") as f:
            for ph, msg in FAILURES:
                f.write("[%s] %s\n" % (ph, msg))
        log("%d FAILED assertion(s):" % len(FAILURES))
        for ph, msg in FAILURES:
            sys.stdout.write("  [%s] %s\n" % (ph, msg.splitlines()[0] if msg else msg))
        log("audit files kept for inspection: %s" % ", ".join(ctx.audit_files))
        return 130 if interrupted else 1
    # Passed: drop the big audit files (about 1.5 KB per request), keep the rest.
    for path in ctx.audit_files:
        if os.path.getsize(path) > 20 * 1024 * 1024 and not os.environ.get("SOAK_KEEP_AUDIT"):
            os.unlink(path)
            log("removed %s after it verified (SOAK_KEEP_AUDIT=1 keeps it)" % path)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
