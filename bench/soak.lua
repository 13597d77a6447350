-- wrk script for bench/soak.sh: each request carries a token of one class, in the
-- proportions given, and names its class in an `x-soak-class` header so that the server
-- counts answers per class. Classes in `once` are sent once each (tokens the server has
-- never seen); the others cycle through their small pools.
-- Usage: wrk -t1 ... -s bench/soak.lua URL tokens.txt class=percent ...

local pools = {}
local next_of = {}
local schedule = {}
local counter = 0
local once = { fresh = true, fresh_rotated = true, forged = true }
local threads = {}
wrapped = 0

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  for line in io.lines(args[1]) do
    local class, token = line:match("^(%S+) (%S+)$")
    if class then
      pools[class] = pools[class] or {}
      local pool = pools[class]
      pool[#pool + 1] = token
    end
  end
  -- Smooth weighted round robin: the classes are spread evenly over 100 slots.
  local weights, credit = {}, {}
  for i = 2, #args do
    local class, percent = args[i]:match("^(%S+)=(%d+)$")
    if not class or not pools[class] then
      error("bad mix entry or no tokens for " .. tostring(args[i]))
    end
    weights[class] = tonumber(percent)
    credit[class] = 0
  end
  for slot = 1, 100 do
    local best = nil
    for class, weight in pairs(weights) do
      credit[class] = credit[class] + weight
      if not best or credit[class] > credit[best] then best = class end
    end
    credit[best] = credit[best] - 100
    schedule[slot] = best
  end
  for class, _ in pairs(pools) do next_of[class] = 0 end
end

function request()
  counter = counter + 1
  local class = schedule[counter % 100 + 1]
  local pool = pools[class]
  local index = next_of[class]
  next_of[class] = index + 1
  if once[class] and index >= #pool then wrapped = wrapped + 1 end
  local token = pool[index % #pool + 1]
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token, ["x-soak-class"] = class })
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("wrapped") or 0) end
  io.write(string.format("ONE_SHOT_REPEATS %d\n", total))
  io.write(string.format("WRK_P99_MS %.1f\n", latency:percentile(99) / 1000))
  io.write(string.format("WRK_MAX_MS %.1f\n", latency.max / 1000))
  io.write(string.format("WRK_MEAN_MS %.2f\n", latency.mean / 1000))
  io.write(string.format("WRK_REQUESTS %d\n", summary.requests))
  io.write(string.format("WRK_SECONDS %.3f\n", summary.duration / 1e6))
end
