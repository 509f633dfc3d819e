-- Gives back one count of `count_shared.lua` (KEYS and ARGV[1] the same): a
-- reservation not used. Counts that expired meanwhile stay at zero.
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
