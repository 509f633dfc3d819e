-- One inbox's emails of one calendar day (UTC), shared among client
-- networks: KEYS[1] counts the emails that count against the total, KEYS[2]
-- is a hash of emails by network and of the sites (an IPv4 address, an
-- IPv6 /48) that asked that day. ARGV: the network, its site (both named by
-- their keyed hashes), the network's limit, the total's limit, and the end
-- of the day (ms since the epoch), when both keys expire.
-- A site's first email of the day is its own: it does not count against
-- the total (so one inbox gets at most the total plus one per site, and
-- nobody's first email changes what any other client sees); every later
-- one does. The day is the calendar's, the same for every inbox and client:
-- a refusal's wait tells nobody when anyone else asked.
-- Returns {1, pttl} when the network's share is spent, {2, pttl} when the
-- total is, else {0, 1} (a site's first email) or {0, 2} (one counted).
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if mine >= tonumber(ARGV[3]) then
  return {1, redis.call('PTTL', KEYS[2])}
end
local kind = 1
if redis.call('HSETNX', KEYS[2], 'site:' .. ARGV[2], 1) == 0 then
  kind = 2
  local total = tonumber(redis.call('GET', KEYS[1]) or '0')
  if total >= tonumber(ARGV[4]) then
    return {2, redis.call('PTTL', KEYS[1])}
  end
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
return {0, kind}
