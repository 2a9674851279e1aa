-- GET a random path from BENCH_PATHS (one per line) with a Bearer token.
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  paths[#paths + 1] = line
end
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
