-- wrk script for scripts/bench.sh: replays pre-signed callback POSTs at a
-- paced rate. args[1]: a file of "PATH<TAB>BODY" lines; args[2]: the pause
-- in milliseconds each connection takes before its next request (rate =
-- connections * 1000 / pause). Each request is sent once per pass through
-- the file; replies other than 200 "success" are counted. Prints:
--   BENCH requests=N seconds=S p50_us=X p99_us=Y bad=B errors=E
local threads = {}
local reqs = {}
local pos = 0
local pause = 0

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    bad = 0
    pause = tonumber(args[2] or "0")
    for line in io.lines(args[1]) do
        local path, body = string.match(line, "^([^\t]+)\t(.*)$")
        if path then
            table.insert(reqs, wrk.format("POST", path,
                {["Content-Type"] = "text/xml"}, body))
        end
    end
end

function request()
    pos = pos % #reqs + 1
    return reqs[pos]
end

function delay()
    return pause
end

function response(status, headers, body)
    if status ~= 200 or body ~= "success" then
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
