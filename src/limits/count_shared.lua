-- One address's failed sign-ins, shared among client networks, in one
-- fixed window: KEYS[1] counts all networks, KEYS[2] is a hash of counts by
-- network (and of the passes below). ARGV: the network, its limit, the
-- total's limit (the ceiling), the window (ms), the network's site (an
-- IPv4 address, an IPv6 /48) and the passes' limit; networks and sites are
-- named by their keyed hashes. Past the ceiling, a network that has not
-- failed for the address in this window still gets one try, once per site
-- and up to the passes' limit: others' failures do not spend the owner's
-- first try, and rotating networks buys little.
-- Returns {1, pttl} when the network's count is full, {2, pttl} when the
-- ceiling refuses, else counts one and returns {0, 0}.
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if mine >= tonumber(ARGV[2]) then
  return {1, redis.call('PTTL', KEYS[2])}
end
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if total >= tonumber(ARGV[3]) then
  local pass = 'pass:' .. ARGV[5]
  local passes = tonumber(redis.call('HGET', KEYS[2], '+passes') or '0')
  if mine > 0 or redis.call('HEXISTS', KEYS[2], pass) == 1
      or passes >= tonumber(ARGV[6]) then
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
