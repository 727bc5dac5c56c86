-- Check and charge one calendar quota, atomically, on Redis's clock.
-- KEYS[1]: the quota's key; the current period's count is kept at
--          KEYS[1] .. ':' .. period index (same hash tag, same slot).
-- ARGV[1]: the limit
-- ARGV[2]: 'day' or 'month' (UTC)
-- ARGV[3]: cost: 1 charges one request, 0 only looks, -1 gives one back
-- Returns {allowed (0|1), remaining, seconds to the period's end, same}.
local now = tonumber(redis.call('TIME')[1])
local limit = tonumber(ARGV[1])
local cost = tonumber(ARGV[3])
local day = math.floor(now / 86400)
local index, ends
if ARGV[2] == 'day' then
  index = day
  ends = (day + 1) * 86400
else
  -- H. Hinnant's civil_from_days and days_from_civil, as quota.rs.
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  index = y * 12 + m - 1
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  if nm <= 2 then ny = ny - 1 end
  local era2 = math.floor(ny / 400)
  local yoe2 = ny - era2 * 400
  local doy2 = math.floor((153 * ((nm + 9) % 12) + 2) / 5)
  local doe2 = yoe2 * 365 + math.floor(yoe2 / 4) - math.floor(yoe2 / 100) + doy2
  ends = (era2 * 146097 + doe2 - 719468) * 86400
end
local key = KEYS[1] .. ':' .. string.format('%d', index)
local left = math.max(1, ends - now)
local used = tonumber(redis.call('GET', key)) or 0
if cost > 0 then
  if used + cost > limit then
    return {0, math.max(0, limit - used), left, left}
  end
  used = redis.call('INCRBY', key, cost)
  -- Seconds: kept a minute past the period's end, then gone.
  redis.call('EXPIREAT', key, ends + 60)
elseif cost < 0 and used > 0 then
  used = redis.call('DECRBY', key, -cost)
end
return {1, math.max(0, limit - used), left, 0}
