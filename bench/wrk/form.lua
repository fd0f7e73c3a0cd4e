-- POSTs a form built from BODY with "{}" replaced by the next line of LINES (each line used
-- once: the lines are split between wrk's threads).
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local lines, i = {}, 0
function init(args)
  local n, k = tonumber(os.getenv("THREADS") or "2"), 0
  for line in io.lines(os.getenv("LINES")) do
    if #line > 0 then
      if k % n == id then table.insert(lines, line) end
      k = k + 1
    end
  end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  i = i + 1
  local line = lines[i] or "exhausted"
  return wrk.format(nil, nil, nil, (os.getenv("BODY"):gsub("{}", line)))
end
