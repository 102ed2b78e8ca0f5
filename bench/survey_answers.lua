-- wrk script for bench/survey_load.py: every request is a real, distinct answer.
--
--   wrk -t T -c C -d S -s bench/survey_answers.lua http://127.0.0.1:PORT -- ANSWERS_FILE T
--
-- ANSWERS_FILE has one "token trial idempotency_key" per line; thread k (1..T) sends lines k, k+T, k+2T, ...
-- in order, so the Python side knows exactly which keys were sent from each thread's count. Requests are
-- formatted once in init(): the per-request cost in wrk stays a table lookup. When a thread runs out of
-- lines it repeats its last answer with the same key (an idempotent replay, answered 200) and says so.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local file, n = args[1], tonumber(args[2])
  local headers = { ["Content-Type"] = "application/json", ["Connection"] = "close" }
  reqs = {}
  local i = 0
  for line in io.lines(file) do
    if i % n == tid - 1 then
      local token, trial, key = line:match("^(%S+) (%S+) (%S+)$")
      local body = '{"trial":"' .. trial .. '","choice":1,"rt_ms":612.5,"idempotency_key":"' .. key .. '"}'
      reqs[#reqs + 1] = wrk.format("POST", "/api/p/sessions/" .. token .. "/responses", headers, body)
    end
    i = i + 1
  end
  sent, created, replayed, refused, exhausted = 0, 0, 0, 0, 0
end

function request()
  if sent < #reqs then
    sent = sent + 1
  else
    exhausted = 1
  end
  return reqs[sent]
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status == 200 then
    replayed = replayed + 1
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    parts[#parts + 1] = string.format('{"sent":%d,"created":%d,"replayed":%d,"refused":%d,"exhausted":%d}',
      t:get("sent"), t:get("created"), t:get("replayed"), t:get("refused"), t:get("exhausted"))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"threads":[%s]}\n',
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write, e.timeout, table.concat(parts, ",")))
end
