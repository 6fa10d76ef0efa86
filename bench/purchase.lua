-- POST /purchase {"product_id": BENCH_PRODUCT_ID, "quantity": 1} with the session cookie of
-- BENCH_COOKIE, and a unique Idempotency-Key per request: BENCH_RUN_ID-<thread>-<counter>.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "summary.lua")

local product_id = tonumber(os.getenv("BENCH_PRODUCT_ID"))
if product_id == nil then
  error("BENCH_PRODUCT_ID must be set to the id of a product with enough stock")
end
local run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())

wrk.method = "POST"
wrk.body = string.format('{"product_id": %d, "quantity": 1}', product_id)
wrk.headers["Content-Type"] = "application/json"
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end

function request()
  sent = sent + 1
  wrk.headers["Idempotency-Key"] = string.format("%s-%d-%d", run_id, thread_id or 0, sent)
  return wrk.format()
end
