#!/usr/bin/python3
"""make bench: run wrk and account for the machine's CPU while it runs.

  wrkrun.py OUTPUT BENCH_PID SERVER_PID[,PID...] WAIT_IDLE -- wrk ARGS...

Writes wrk's output to OUTPUT, then one line

  BENCH-CPU seconds=S machine=M server=V wrk=W bench=B kernel=K other=O

with each figure in percent of one CPU over the run: the whole machine
(/proc/stat), the server under test (SERVER_PIDs and their descendants), wrk
itself (its rusage), everything else the bench started (descendants of
BENCH_PID: the static upstream, idle peers, this script), kernel threads,
and what remains: other work on the machine, which makes the figures noisy.
With WAIT_IDLE > 0, first waits up to that many seconds for the machine to
be quiet (under 15 % of one CPU busy over a second: our idle servers only),
so that other people's builds and tests do not land in a round; the line
then says how long it waited (waited=), and whether it gave up (busy=1).
Exits with wrk's status.
"""
import os
import signal
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    return sum(v[:8]) - v[3] - v[4]


def processes():
    """pid -> (ppid, cpu ticks, kernel thread?) for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        ppid, flags = int(rest[1]), int(rest[6])
        ticks = int(rest[11]) + int(rest[12])
        out[int(name)] = (ppid, ticks, bool(flags & 0x00200000))  # PF_KTHREAD
    return out


def descendants(procs, roots):
    found = set(p for p in roots if p in procs)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in procs.items():
            if pid not in found and ppid in found:
                found.add(pid)
                grew = True
    return found


def ticks(procs, pids):
    return sum(procs[p][1] for p in pids if p in procs)


def snapshot(bench_pid, server_pids):
    procs = processes()
    server = descendants(procs, server_pids)
    bench = descendants(procs, [bench_pid]) - server
    kernel = set(p for p, v in procs.items() if v[2])
    return {
        "machine": machine_busy(),
        "server": ticks(procs, server),
        "bench": ticks(procs, bench),
        "kernel": ticks(procs, kernel),
        "procs": procs,
        "sets": (server, bench, kernel),
    }


def delta(a, b, key):
    """Ticks used between the snapshots by the pids of a's set for key."""
    idx = {"server": 0, "bench": 1, "kernel": 2}[key]
    pids = a["sets"][idx] | b["sets"][idx]
    total = 0
    for p in pids:
        before = a["procs"].get(p, (0, 0, False))[1]
        after = b["procs"].get(p, (0, before, False))[1]
        total += max(0, after - before)
    return total


def wait_idle(limit_s):
    """Wait until a second passes with the machine under 15 % of one CPU busy."""
    t0 = time.monotonic()
    while True:
        b0 = machine_busy()
        time.sleep(1.0)
        if (machine_busy() - b0) * 100.0 / HZ < 15.0:
            return time.monotonic() - t0, 0
        if time.monotonic() - t0 >= limit_s:
            return time.monotonic() - t0, 1


def main(argv):
    if len(argv) < 6 or argv[5] != "--":
        sys.stderr.write(__doc__)
        return 2
    output, bench_pid = argv[1], int(argv[2])
    server_pids = [int(p) for p in argv[3].split(",") if p]
    waited, busy = wait_idle(float(argv[4])) if float(argv[4]) > 0 else (0.0, 0)
    cmd = argv[6:]
    a = snapshot(bench_pid, server_pids)
    t0 = time.monotonic()
    with open(output, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)

        def forward(sig, frame):
            # Stopped by the bench (Ctrl-C, exit): take wrk along.
            proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        _, status, ru = os.wait4(proc.pid, 0)
    secs = time.monotonic() - t0
    b = snapshot(bench_pid, server_pids)
    rc = os.waitstatus_to_exitcode(status)
    wrk = (ru.ru_utime + ru.ru_stime) * HZ
    machine = b["machine"] - a["machine"]
    server = delta(a, b, "server")
    bench = delta(a, b, "bench")
    kernel = delta(a, b, "kernel")
    other = max(0.0, machine - server - bench - kernel - wrk)

    def pct(t):
        return 100.0 * t / HZ / secs if secs > 0 else 0.0

    with open(output, "a") as f:
        f.write("BENCH-CPU seconds=%.2f machine=%.0f server=%.0f wrk=%.0f bench=%.0f kernel=%.0f other=%.0f "
                "waited=%.0f busy=%d\n" % (secs, pct(machine), pct(server), pct(wrk), pct(bench), pct(kernel),
                                           pct(other), waited, busy))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
