-- wrk script: POST /execute with one nonce (every answer after the first is a replay).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"action":"echo","payload":{"msg":"hi"},"nonce":"bench-replay"}'

-- done(): the summary line of bench/latency.lua (wrk runs from the repository).
dofile("bench/latency.lua")
