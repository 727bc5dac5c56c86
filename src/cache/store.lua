-- The shared cache's store: KEYS[1] = the object key; ARGV[1] = the
-- object's bytes, ARGV[2] = its TTL in ms, ARGV[3..] = the generation keys
-- of what it depends on, whose current values are recorded with it.
local deps = {}
for i = 3, #ARGV do
  deps[#deps + 1] = ARGV[i] .. '=' .. (redis.call('GET', ARGV[i]) or '')
end
redis.call('HSET', KEYS[1], 'obj', ARGV[1], 'deps', table.concat(deps, '\n'))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
