-- POST the token endpoint with private_key_jwt: each request spends one pre-signed,
-- single-use client assertion (threads take interleaved lines of the file).
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  nthreads = tonumber(os.getenv("BENCH_THREADS"))
  assertions = {}
  for line in io.lines(os.getenv("BENCH_ASSERTIONS")) do
    table.insert(assertions, line)
  end
  index = id + 1
end

function request()
  local body = assertions[index]
  index = index + nthreads
  if body == nil then
    body = "grant_type=client_credentials&exhausted=1"
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
