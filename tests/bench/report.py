#!/usr/bin/python3
"""make bench: read wrk outputs and print the table (see tests/bench/README.md).

  report.py --table OUTDIR     the table, from OUTDIR/wrk/*.txt and OUTDIR/meta.env
  report.py --brief FILE       one line about one wrk run
  report.py --ok-count FILE    the 2xx answers wrk counted in one run

Each wrk output ends with the BENCH-RESULT line that tests/bench/delete.lua
prints; wrk's own --latency text above it is kept for people.
"""
import glob
import json
import os
import re
import statistics
import sys

LABELS = {
    "nginx": "nginx plain proxy",
    "haproxy": "HAProxy jwt_verify RS256",
    "gw-cache": "smc-gateway (token cache on)",
    "gw-nocache": "smc-gateway (token cache off)",
    "gw": "smc-gateway (cache n/a)",
}


class Run:
    def __init__(self, path):
        self.path = path
        m = None
        self.cpu = {}
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("BENCH-RESULT "):
                    m = line
                elif line.startswith("BENCH-CPU "):
                    self.cpu = {k: float(x) for k, x in (kv.split("=", 1) for kv in line.split()[1:])}
        if m is None:
            raise SystemExit("report: %s has no BENCH-RESULT line (did wrk fail?)" % path)
        v = dict(kv.split("=", 1) for kv in m.split()[1:])
        v = {k: int(x) for k, x in v.items()}
        self.requests = v["requests"]
        self.seconds = v["duration_us"] / 1e6
        self.rps = self.requests / self.seconds if self.seconds > 0 else 0.0
        self.p50_ms = v["p50_us"] / 1000.0
        self.p99_ms = v["p99_us"] / 1000.0
        self.non2xx = v["status"]
        self.socket_errors = v["connect"] + v["read"] + v["write"] + v["timeout"]
        self.errors = self.non2xx + self.socket_errors
        self.ok = self.requests - self.non2xx

    def brief(self):
        cpu = ""
        if self.cpu:
            cpu = "; CPU %% of one core: server %.0f, wrk %.0f, static upstream and rest of bench %.0f, " \
                  "others %.0f" % (self.cpu["server"], self.cpu["wrk"], self.cpu["bench"], self.cpu["other"])
        return "%s req/s, p50 %.2f ms, p99 %.2f ms, %d non-2xx, %d socket errors%s" % (
            grouped(self.rps), self.p50_ms, self.p99_ms, self.non2xx, self.socket_errors, cpu)


SLOW_SYNC = re.compile(r"(\d+) fdatasync calls took (\d+) ms or more since the last report, the longest (\d+) ms")


def slow_syncs(log_path):
    """(count, threshold ms, longest ms) of the slow syncs a gateway log reports; None without the log."""
    if not os.path.exists(log_path):
        return None
    n, limit, worst = 0, 0, 0
    with open(log_path, errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            m = SLOW_SYNC.search(str(d.get("msg", ""))) if isinstance(d, dict) else None
            if m:
                n += int(m.group(1))
                limit = int(m.group(2))
                worst = max(worst, int(m.group(3)))
    return n, limit, worst


def grouped(x):
    return "{:,.0f}".format(x)


def read_meta(outdir):
    meta = {}
    with open(os.path.join(outdir, "meta.env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return meta


def mib(kb):
    return int(kb) / 1024.0


def table(outdir):
    meta = read_meta(outdir)
    wrkdir = os.path.join(outdir, "wrk")
    servers = meta["servers"].split()
    # Attribution runs (BENCH_ATTRIBUTION=1) are measured in the same rounds
    # but are no configuration of the product: printed apart, below.
    attribution = meta.get("attribution", "").split()
    shown = [s for s in servers if s not in attribution]
    rounds = int(meta["rounds"])
    runs = {s: [] for s in servers}
    for r in range(1, rounds + 1):
        for s in servers:
            runs[s].append(Run(os.path.join(wrkdir, "r%d-%s.txt" % (r, s))))

    med = {}
    for s in servers:
        rs = runs[s]
        med[s] = {
            "rps": statistics.median(x.rps for x in rs),
            "p50": statistics.median(x.p50_ms for x in rs),
            "p99": statistics.median(x.p99_ms for x in rs),
            "errors": sum(x.errors for x in rs),
            "lo": min(x.rps for x in rs),
            "hi": max(x.rps for x in rs),
            "cpu": statistics.median(x.cpu.get("server", 0) for x in rs),
        }

    out = []
    out.append("smc-gateway benchmark — %s CPUs (%s), nothing pinned; audit on %s %s (%s), fdatasync on" % (
        meta["cpus"], meta["cpu_model"], meta["fs_type"], meta.get("fs_source", ""), meta["audit_dir"]))
    out.append("%s" % meta.get("gateway_binary", ""))
    out.append("medians of %d rounds × %s s, wrk -t%s -c%s, DELETE with one RS256 token; "
               "nginx %s, HAProxy %s, wrk %s" % (rounds, meta["seconds"], meta["threads"], meta["connections"],
                                                  meta["nginx_version"], meta["haproxy_version"],
                                                  meta["wrk_version"]))
    fmt = "%-31s %9s %7s %7s %7s %12s %6s %10s %9s"
    out.append(fmt % ("server", "req/s", "p50 ms", "p99 ms", "errors", "min–max", "CPU %", "vs HAProxy",
                      "vs nginx"))
    for s in shown:
        m = med[s]
        vs_h = m["rps"] / med["haproxy"]["rps"] if med["haproxy"]["rps"] else 0
        vs_n = m["rps"] / med["nginx"]["rps"] if med["nginx"]["rps"] else 0
        spread = "%s–%s" % (kilo(m["lo"]), kilo(m["hi"]))
        out.append(fmt % (LABELS.get(s, s), grouped(m["rps"]), "%.2f" % m["p50"], "%.2f" % m["p99"],
                          m["errors"], spread, "%.0f" % m["cpu"], "%.2f×" % vs_h, "%.2f×" % vs_n))
    others = [x.cpu.get("other", 0) for s in servers for x in runs[s]]
    wrks = [x.cpu.get("wrk", 0) for s in servers for x in runs[s]]
    noisy = sum(1 for x in others if x > 20)
    out.append("CPU %% is the server's own (of one core; 200 = both); wrk used %.0f–%.0f; other work on the "
               "machine during the rounds: median %.0f, max %.0f; %d of %d runs over 20%s" % (
                   min(wrks), max(wrks), statistics.median(others), max(others), noisy, len(others),
                   " — NOISY, compare ratios, not absolute figures" if noisy * 4 > len(others) else ""))
    busy = sum(int(x.cpu.get("busy", 0)) for s in servers for x in runs[s])
    waited = sum(x.cpu.get("waited", 0) for s in servers for x in runs[s])
    if waited > 0:
        out.append("waited %.0f s in all for a quiet machine (BENCH_WAIT_IDLE); %d runs started busy anyway" % (
            waited, busy))
    def vs_haproxy(s):
        """The server's ratios to HAProxy, round by round."""
        return " ".join("%.2f" % (g.rps / h.rps) for g, h in zip(runs[s], runs["haproxy"]) if h.rps)

    for s in shown:
        if s.startswith("gw"):
            out.append("%s / HAProxy, round by round: %s" % (LABELS.get(s, s), vs_haproxy(s)))
    m = re.search(r"audit\.slow_sync_warn_ms=(\d+)", meta.get("features", ""))
    for s in shown:
        if s.startswith("gw") and m:
            # What each round's gateway log reports: how many syncs took that
            # long, the longest, and that round's p99 beside it.
            got = [slow_syncs(os.path.join(outdir, "logs", "gateway-r%d-%s.log" % (r, s))) for r in range(1, rounds + 1)]
            cells = ["?" if g is None else "%d (longest %d ms; p99 %.0f ms)" % (g[0], g[2], x.p99_ms) if g[0] else "0"
                     for g, x in zip(got, runs[s])]
            out.append("%s: audit syncs of %s ms or more, round by round: %s" % (LABELS.get(s, s), m.group(1),
                                                                                  " ".join(cells)))

    for s in attribution:
        base = [x for x in shown if x.startswith("gw")][0]
        cost = statistics.median(1 - b.rps / g.rps for g, b in zip(runs[s], runs[base]) if g.rps)
        out.append("attribution, not a configuration (audit written, nothing synced, tests/fault/fault.so): "
                   "%s, same rounds: %s req/s, p50 %.2f ms, p99 %.2f ms, %.2f× HAProxy (rounds %s); the syncs "
                   "cost %s %.0f%% of its requests/s (median of the rounds)" % (
                       LABELS.get(base, base), grouped(med[s]["rps"]), med[s]["p50"], med[s]["p99"],
                       med[s]["rps"] / med["haproxy"]["rps"] if med["haproxy"]["rps"] else 0,
                       vs_haproxy(s), LABELS.get(base, base), 100 * cost))
    total_errors = sum(med[s]["errors"] for s in servers)
    lat_conns = int(meta["latency_connections"])
    rss_conns = int(meta["rss_connections"])
    lat_ms = int(meta["upstream_latency_ms"])
    variant = LABELS.get(meta["latency_variant"], meta["latency_variant"])
    for conns in (lat_conns, rss_conns):
        # The 256-connection round runs several times: median, and the spread.
        paths = sorted(glob.glob(os.path.join(wrkdir, "latency-%d-r*.txt" % conns))) or \
            [os.path.join(wrkdir, "latency-%d.txt" % conns)]
        rs = sorted((Run(p) for p in paths), key=lambda x: x.rps)
        r = rs[(len(rs) - 1) // 2]  # the lower middle for an even count
        ideal = conns * 1000.0 / lat_ms if lat_ms else 0
        pct = "%.1f%% of %s" % (100.0 * r.rps / ideal, grouped(ideal)) if ideal else "no ideal"
        spread = ""
        if len(rs) > 1:
            spread = ", median of %d rounds (%s–%s)" % (len(rs), grouped(rs[0].rps), grouped(rs[-1].rps))
        total_errors += sum(x.errors for x in rs)
        out.append("latency-bound: upstream %d ms (smc-sim), %d conns: %s req/s (%s%s), p50 %.0f ms, "
                   "p99 %.0f ms, %d errors; gateway CPU %.0f%%, others %.0f%%" % (
                       lat_ms, conns, grouped(r.rps), pct, spread, r.p50_ms, r.p99_ms, sum(x.errors for x in rs),
                       r.cpu.get("server", 0), r.cpu.get("other", 0)))
    out.append("peak RSS at %s in-flight: %.1f MiB (VmHWM; %.1f MiB after the %d-conn round, VmRSS at the end "
               "%.1f MiB; the simulator held up to %s requests at once; gateway open-files limit %s)" % (
                   "{:,}".format(rss_conns), mib(meta["vmhwm_kb"]), mib(meta["vmhwm_after_latency_round_kb"]),
                   lat_conns, mib(meta["vmrss_kb"]), meta["sim_max_pending"], meta["gateway_nofile"]))
    slow = ""
    if m:
        got = slow_syncs(os.path.join(outdir, "logs", "gateway-latency.log"))
        if got is not None:
            slow = "; audit syncs of %s ms or more: %d%s" % (m.group(1), got[0],
                                                          " (longest %d ms)" % got[2] if got[0] else "")
    out.append("  (latency-bound rounds: %s, %s s each, wrk -t%s%s)" % (variant, meta["seconds"], meta["threads"],
                                                                       slow))
    n = int(meta["audit_requests"])
    entries = int(meta["audit_entries"])
    verified = int(meta["audit_verified"])
    runs_n = int(meta["audit_runs"])
    if meta["audit_verify_tool"] == "yes":
        chain = "chain verified in %d of %d files" % (verified, runs_n)
    else:
        chain = "chain not verified (no smc-gateway-audit)"
    ok = "OK" if meta["audit_bad"] == "0" and entries == 2 * n else "MISMATCH in %s files" % meta["audit_bad"]
    service = int(meta.get("audit_service_entries", 0))
    out.append("audit: %s requests → %s entries (%s)%s, %s; %d gateway runs" % (
        "{:,}".format(n), "{:,}".format(entries), ok,
        " + %s of the gateway's own (checkpoints…)" % "{:,}".format(service) if service else "", chain, runs_n))
    out.append("gateway config keys: %s" % meta["features"])
    if total_errors:
        out.append("ERRORS: %d requests were not answered 2xx or hit socket errors (see the wrk outputs)"
                   % total_errors)
    print("\n".join(out))
    return 1 if total_errors else 0


def kilo(x):
    return "%.1fk" % (x / 1000.0)


def main(argv):
    if len(argv) == 3 and argv[1] == "--table":
        return table(argv[2])
    if len(argv) == 3 and argv[1] == "--brief":
        print(Run(argv[2]).brief())
        return 0
    if len(argv) == 3 and argv[1] == "--ok-count":
        print(Run(argv[2]).ok)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
