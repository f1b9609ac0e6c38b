-- wrk script for scripts/bench.sh: wrk_check.lua's check and report, with
-- a pause (args[2], milliseconds) each connection takes before its next
-- request, for a paced load below either proxy's capacity. A script of its
-- own: wrk takes a different path for every request once delay() exists.
dofile("tests/bench/wrk_check.lua")

local pause = 0
local check_init = init

function init(args)
    check_init(args)
    pause = tonumber(args[2] or "0")
end

function delay()
    return pause
end
