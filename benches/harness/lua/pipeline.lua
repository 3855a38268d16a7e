-- benches/harness/lua/pipeline.lua: HTTP/1.1 pipelining, TechEmpower "pipeline.lua" style.
-- Each wrk request() call writes DEPTH (default 16) copies of the request in one
-- write; wrk counts every response.  Latency is per batch of DEPTH responses.
-- Usage: wrk ... -s lua/pipeline.lua URL -- [DEPTH]
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end

-- same result line as lua/report.lua
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
