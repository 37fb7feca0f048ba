-- Shared by every scenario (bench/loadgen.py puts it in front of the scenario's script).
-- Prints one machine-readable line that bench/loadgen.py parses; latencies are in microseconds.

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"duration_us\":%.0f,\"requests\":%.0f,\"bytes\":%.0f,\"connect_errors\":%.0f," ..
    "\"read_errors\":%.0f,\"write_errors\":%.0f,\"status_errors\":%.0f,\"timeouts\":%.0f," ..
    "\"p50_us\":%.0f,\"p90_us\":%.0f,\"p95_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f,\"mean_us\":%.1f}\n",
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
