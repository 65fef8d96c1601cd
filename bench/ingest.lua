-- wrk script: POST /v1/events with a ~500-byte payload, as fast as the server answers.
--   wrk -t2 -c128 -d15s -s bench/ingest.lua http://127.0.0.1:18080 -- <api_key>
local padding = string.rep("x", 440)
local body = '{"type":"bench.event","payload":{"padding":"' .. padding .. '"}}'
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  headers["Authorization"] = "Bearer " .. args[1]
end

function request()
  return wrk.format("POST", "/v1/events", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx/3xx: %d of %d\n", summary.errors.status, summary.requests))
end
