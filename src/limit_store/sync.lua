-- Add the requests an instance let through on its local bucket to the
-- shared one, and answer how far the shared bucket is ahead of now. The
-- requests already passed: nothing is refused here.
-- KEYS[1]: the bucket's TAT, µs of Redis TIME (as gcra.lua keeps it).
-- ARGV[1]: emission interval, µs
-- ARGV[2]: requests to add (0: only read)
-- Returns the TAT minus now, in µs (0 when the bucket is full).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
if n > 0 then
  tat = math.max(tat, now) + n * interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
    math.ceil((tat - now) / 1000) + 1000)
end
return math.max(0, math.floor(tat - now))
