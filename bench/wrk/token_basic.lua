-- POST the token endpoint with client_secret_basic. AUTH comes from the environment.
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")
