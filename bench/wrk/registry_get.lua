-- GET a registry resource with a Bearer token; with BENCH_ETAG set, revalidate (304 path).
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local etag = os.getenv("BENCH_ETAG")
if etag and etag ~= "" then
  wrk.headers["If-None-Match"] = etag
end
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
