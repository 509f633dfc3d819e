-- Starts the lockout (after the failure that reached the limit). The
-- window's count stays for support to read (`user show`), but ends with the
-- lockout at the latest, so the window after it starts afresh.
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 or left > tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
