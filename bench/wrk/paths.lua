-- GET a list of paths in turn (lead status pages, or one analytics path).
-- Script argument: the file with one path per line. Each thread starts at a different place.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local paths, index = {}, 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "no paths in " .. tostring(args[1]))
  index = ((tid or 1) * 7919) % #paths
end

function request()
  index = index % #paths + 1
  return wrk.format("GET", paths[index])
end
