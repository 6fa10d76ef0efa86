-- Shared by the scripts. Each wrk thread counts the requests it sends in the global `sent`
-- (the scripts' request() adds one); after the run, done() prints one machine-readable line
-- for Bench.wrk in bench/scenarios.py. Latencies are in microseconds; status_errors counts
-- responses with a status of 400 or more; sent - requests were still in flight when wrk stopped.
sent = 0

local threads = {}

-- Runs in the main Lua state once per wrk thread; thread_id lands in that thread's state.
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function done(summary, latency, requests)
  local total_sent = 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "sent": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
      .. '"latency_mean_us": %.1f, "latency_max_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, total_sent, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
