-- POST the token endpoint with client_secret_basic as a random client from BENCH_BASICS
-- (one base64 "client_id:secret" per line).
local basics = {}
for line in io.lines(os.getenv("BENCH_BASICS")) do
  basics[#basics + 1] = line
end
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}

function request()
  headers["Authorization"] = "Basic " .. basics[math.random(#basics)]
  return wrk.format("POST", nil, headers, "grant_type=client_credentials")
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
