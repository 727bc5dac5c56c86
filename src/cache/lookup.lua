-- The shared cache's lookup: the object under KEYS[1], unless a purge
-- moved on a generation it depends on (then it is deleted).
-- Reply: the object's bytes, or nil.
local v = redis.call('HMGET', KEYS[1], 'obj', 'deps')
if not v[1] then
  return false
end
for name, gen in string.gmatch(v[2] or '', '([^=\n]+)=([^\n]*)') do
  local now = redis.call('GET', name) or ''
  if now ~= gen then
    redis.call('DEL', KEYS[1])
    return false
  end
end
return v[1]
