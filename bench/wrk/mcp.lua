-- POSTs a JSON-RPC tools/call; with TOKENS=<file>, sends those bearer tokens round-robin.
local tokens = {}
local path = os.getenv("TOKENS")
if path and path ~= "" then
  for line in io.lines(path) do
    if #line > 0 then table.insert(tokens, line) end
  end
end
local i = math.random(1, 1000)
wrk.method = "POST"
wrk.body = os.getenv("BODY") or '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
if os.getenv("BASIC") then wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC") end
request = function()
  if #tokens > 0 then
    i = i + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]
  end
  return wrk.format()
end
response = function(status, headers, body)
  if status >= 300 then errors_seen = (errors_seen or 0) + 1 end
end
