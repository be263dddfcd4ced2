-- make soak: the wrk load of every phase (tests/soak/soak.py starts wrk with it).
--
--   SOAK_TOKEN      the bearer token sent with every request (required; the
--                   invalid-token flood passes a garbage one)
--   SOAK_PATH       request target (default /jobs/j-soak1)
--   SOAK_STATUSES   1: count the answers by status (costs a Lua call per
--                   answer; used by the fault phase, not by the max-rate runs)
--   SOAK_DELAY_MS   > 0: pause this long before each request on a connection
--                   (a moderate load instead of a closed loop at full speed)
--
-- At the end one machine-readable line, after wrk's own --latency text:
--   SOAK-RESULT requests=N duration_us=N connect=N read=N write=N status=N
--               timeout=N p50_us=N p99_us=N max_us=N statuses=200:N,502:N
-- (status= is wrk's count of non-2xx/3xx answers; statuses= is empty
-- unless SOAK_STATUSES=1).
local token = os.getenv("SOAK_TOKEN")
if token == nil or token == "" then
    io.stderr:write("load.lua: SOAK_TOKEN is not set\n")
    os.exit(2)
end

wrk.method = "DELETE"
wrk.path = os.getenv("SOAK_PATH") or "/jobs/j-soak1"
wrk.headers["Authorization"] = "Bearer " .. token

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "0") or 0
if delay_ms > 0 then
    function delay()
        return delay_ms
    end
end

if os.getenv("SOAK_STATUSES") == "1" then
    counts = {}
    function response(status, headers, body)
        counts[status] = (counts[status] or 0) + 1
    end
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        local c = t:get("counts")
        if c ~= nil then
            for status, n in pairs(c) do
                total[status] = (total[status] or 0) + n
            end
        end
    end
    local keys = {}
    for status in pairs(total) do
        table.insert(keys, status)
    end
    table.sort(keys)
    local parts = {}
    for _, status in ipairs(keys) do
        table.insert(parts, string.format("%d:%d", status, total[status]))
    end
    local e = summary.errors
    io.write(string.format(
        "SOAK-RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
        "p50_us=%d p99_us=%d max_us=%d statuses=%s\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.max, table.concat(parts, ",")))
end
