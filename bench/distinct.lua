-- wrk script: every request carries the next token of a file (one token per line), so
-- that no token is sent twice while the file lasts.
-- Usage: wrk -t1 ... -s bench/distinct.lua URL tokens.txt [first-line-index]

local tokens = {}
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  if #tokens == 0 then
    error("no tokens in " .. tostring(args[1]))
  end
  next_index = tonumber(args[2] or "0")
end

function request()
  next_index = next_index + 1
  local token = tokens[(next_index - 1) % #tokens + 1]
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end
