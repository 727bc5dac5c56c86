-- Check and charge one GCRA bucket, atomically, on Redis's clock.
-- KEYS[1]: the bucket's theoretical arrival time (TAT), µs of Redis TIME.
-- ARGV[1]: emission interval, µs (may have a fraction)
-- ARGV[2]: tolerance, µs ((burst - 1) intervals)
-- ARGV[3]: cost: 1 charges one request, 0 only looks, -1 gives one back
-- Returns {allowed (0|1), remaining, reset seconds, retry-after seconds}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0

local function store(value)
  -- Kept until the bucket is full again, when a missing key means the same.
  redis.call('SET', KEYS[1], string.format('%.0f', value), 'PX',
    math.ceil((value - now) / 1000) + 1000)
end

if cost < 0 then
  if tat > now then
    tat = math.max(now, tat - interval)
    store(tat)
  end
  return {1, 0, 0, 0}
end

local start = math.max(tat, now)
local ahead = start - now
if ahead > tolerance then
  return {0, 0, math.ceil(ahead / 1000000), math.ceil((ahead - tolerance) / 1000000)}
end
if cost > 0 then
  tat = start + interval
  ahead = tat - now
  store(tat)
end
return {1, math.floor((tolerance + interval - ahead) / interval), math.ceil(ahead / 1000000), 0}
