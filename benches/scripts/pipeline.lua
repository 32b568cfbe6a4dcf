-- wrk script: 16 pipelined GET /ping per round trip (wrk -s benches/scripts/pipeline.lua).
init = function(args)
  local r = {}
  for i = 1, 16 do
    r[i] = wrk.format("GET", "/ping")
  end
  req = table.concat(r)
end

request = function()
  return req
end
