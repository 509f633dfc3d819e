-- Reserves an activation attempt. Returns `{1, pttl}` when locked (or when
-- this attempt exceeds the limit, which starts the lockout), else `{0, n}`
-- with the attempt's number in the window. A count that starts a lockout
-- stays until the lockout ends at the latest (see lock.lua).
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {1, locked} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 or left > tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  return {1, tonumber(ARGV[3])}
end
return {0, n}
