-- make bench: the load every server gets. DELETE /jobs/j-bench1 with the
-- RS256 token from $BENCH_TOKEN; at the end one machine-readable line that
-- tests/bench/report.py reads (wrk's own --latency text stays above it).
local token = os.getenv("BENCH_TOKEN")
if token == nil or token == "" then
    io.stderr:write("delete.lua: BENCH_TOKEN is not set\n")
    os.exit(2)
end

wrk.method = "DELETE"
wrk.path = "/jobs/j-bench1"
wrk.headers["Authorization"] = "Bearer " .. token

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH-RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
        "p50_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.max))
end
