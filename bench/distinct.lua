-- wrk script: every request carries the next token of a file (one token per line), so
-- that no token is sent twice while the file lasts; or, with a repeat count of 2, every
-- token twice in a row.
-- Usage: wrk -t1 ... -s bench/distinct.lua URL tokens.txt [first-line-index [repeat]]

local tokens = {}
local next_index = 0
local first = 0
local repeats = 1

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  if #tokens == 0 then
    error("no tokens in " .. tostring(args[1]))
  end
  first = tonumber(args[2] or "0")
  repeats = tonumber(args[3] or "1")
end

function request()
  local line = first + math.floor(next_index / repeats)
  next_index = next_index + 1
  local token = tokens[line % #tokens + 1]
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end
