-- One address's (or inbox's) budget shared among client networks, in one
-- fixed window: KEYS[1] counts all networks, KEYS[2] is a hash of counts by
-- network (and of the passes below). ARGV: the network, its limit, the
-- total's limit, the window (ms), the mode, the network's wider prefix and
-- the passes' limit. Modes past a full total:
--   '0': refuse;
--   '1': let a network that has not used this budget pass, once per wider
--        prefix and up to the passes' limit (the owner's first try is not
--        refused for what others spent, and rotating networks buys little);
--   '2': never refuse.
-- Returns {1, pttl} when the network's count is full, {2, pttl} when the
-- total refuses, else counts one and returns {0, 0}.
-- An optional KEYS[3] is only checked against ARGV[8] (refused: {3, pttl}).
if KEYS[3] and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[8]) then
  return {3, redis.call('PTTL', KEYS[3])}
end
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if mine >= tonumber(ARGV[2]) then
  return {1, redis.call('PTTL', KEYS[2])}
end
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if total >= tonumber(ARGV[3]) and ARGV[5] ~= '2' then
  local pass = 'pass:' .. ARGV[6]
  local passes = tonumber(redis.call('HGET', KEYS[2], '+passes') or '0')
  if ARGV[5] ~= '1' or mine > 0 or redis.call('HEXISTS', KEYS[2], pass) == 1
      or passes >= tonumber(ARGV[7]) then
    return {2, redis.call('PTTL', KEYS[1])}
  end
  redis.call('HSET', KEYS[2], pass, 1)
  redis.call('HINCRBY', KEYS[2], '+passes', 1)
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return {0, 0}
