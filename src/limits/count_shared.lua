-- One address's (or inbox's) budget shared among client networks, in one
-- fixed window: KEYS[1] counts all networks, KEYS[2] is a hash of counts by
-- network. ARGV: the network, its limit, the total's limit, the window (ms),
-- and '1' when a network that has not used this budget passes a full total
-- (the owner's first try is never refused for what others spent).
-- Returns {1, pttl} when the network's count is full, {2, pttl} when the
-- total is, else counts one in both and returns {0, 0}.
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if mine >= tonumber(ARGV[2]) then
  return {1, redis.call('PTTL', KEYS[2])}
end
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if total >= tonumber(ARGV[3]) and (ARGV[5] ~= '1' or mine > 0) then
  return {2, redis.call('PTTL', KEYS[1])}
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return {0, 0}
