-- wrk script for benchmarks/api_vs_hma.py: one request shape per run, the hash
-- cycling through a file of hex PDQ hashes (one a line), so each request differs.
--
--   wrk ... -s lookup.lua -- MODE HASHES [KEY] [BATCH]
--
-- MODE "get":   GET <path from wrk's URL>?signal_type=pdq&signal=HEX (HMA's lookups)
-- MODE "match": POST /v1/match with BATCH hashes (default 1), Bearer KEY (hashdb)
--
-- At the end it prints one line "RESULT {json}" that the benchmark parses:
-- requests, seconds, p50/p99 latency in ms, and how many responses were not 2xx
-- or failed at the socket.

local mode, hashes, key, batch
local counter = 0
local requests = {}

-- Each wrk thread gets its own id, so the threads start at different hashes.
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local function load(path)
  local out = {}
  for line in io.lines(path) do
    if #line > 0 then out[#out + 1] = line end
  end
  return out
end

function init(args)
  mode = args[1]
  hashes = load(args[2])
  key = args[3]
  batch = tonumber(args[4] or "1")
  -- Pre-build up to 4,096 distinct requests so the client spends nothing per request.
  local n = math.min(4096, math.max(1, math.floor(#hashes / batch)))
  local offset = ((id or 0) * 7919 * batch) % #hashes
  for i = 0, n - 1 do
    if mode == "get" then
      local h = hashes[(offset + i) % #hashes + 1]
      requests[#requests + 1] = wrk.format("GET", wrk.path .. "?signal_type=pdq&signal=" .. h)
    else
      local parts = {}
      for k = 0, batch - 1 do
        local h = hashes[(offset + i * batch + k) % #hashes + 1]
        parts[#parts + 1] = '{"signal_type":"pdq","value":"' .. h .. '"}'
      end
      local body = '{"queries":[' .. table.concat(parts, ",") .. ']}'
      local headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. key,
      }
      requests[#requests + 1] = wrk.format("POST", "/v1/match", headers, body)
    end
  end
end

function request()
  counter = counter + 1
  return requests[(counter % #requests) + 1]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, '
      .. '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
