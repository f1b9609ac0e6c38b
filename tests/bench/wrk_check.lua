-- wrk script for scripts/bench.sh: GETs the URL given on the command line
-- and counts replies whose body lacks the expected text (args[1]), so a
-- fast error reply cannot pass for a result. Prints one machine-readable
-- line at the end:
--   BENCH requests=N seconds=S p50_us=X p99_us=Y bad=B errors=E
local threads = {}
local expect

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    expect = args[1] or ""
    bad = 0
end

function response(status, headers, body)
    if status ~= 200 or not string.find(body, expect, 1, true) then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local b = 0
    for _, t in ipairs(threads) do
        b = b + t:get("bad")
    end
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d seconds=%.3f p50_us=%d p99_us=%d bad=%d errors=%d\n",
        summary.requests, summary.duration / 1e6, latency:percentile(50),
        latency:percentile(99), b,
        e.connect + e.read + e.write + e.timeout + e.status))
end
