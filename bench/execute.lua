-- wrk script: POST /execute with a unique nonce per request.
local threads = {}
local next_id = 0

function setup(thread)
    next_id = next_id + 1
    thread:set("tid", next_id)
end

local counter = 0
function request()
    counter = counter + 1
    local body = string.format(
        '{"action":"add","payload":{"a":%d,"b":2},"nonce":"bench-%s-%d-%d"}',
        counter, os.getenv("BENCH_RUN") or "0", tid or 0, counter)
    return wrk.format("POST", "/execute", {["Content-Type"] = "application/json"}, body)
end

local non200 = 0
function response(status)
    if status ~= 200 then non200 = non200 + 1 end
end

-- done(): the summary line of bench/latency.lua (wrk runs from the repository).
dofile("bench/latency.lua")
