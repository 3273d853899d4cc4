-- wrk: PATCH /api/v1/users/me, each request with an access token drawn at random from
-- the file named by $TOKENS (one per line) and a new nickname: many members' profile
-- changes, not one member's.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
  local body = string.format('{"user":{"nickname":"n%d"}}', math.random(1000000000))
  return wrk.format("PATCH", "/api/v1/users/me", {
    ["Authorization"] = tokens[math.random(#tokens)],
    ["Content-Type"] = "application/json",
  }, body)
end
