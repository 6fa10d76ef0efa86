-- GET the URL given to wrk, with the session cookie of BENCH_COOKIE ("session=<sid>") if set.
local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "summary.lua")

local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end

local prepared = nil
function request()
  sent = sent + 1
  if prepared == nil then
    prepared = wrk.format()
  end
  return prepared
end
