-- A purge: KEYS[1] = the generation key it names, moved on (and kept for
-- ARGV[1] ms); the purge is published on channel ARGV[2] as ARGV[3] for
-- the other instances' local tiers.
local g = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return g
