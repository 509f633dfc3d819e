-- Gives back an email `reserve_email.lua` counted and that was not sent
-- (KEYS, the same day's, and ARGV[1..2] the same; ARGV[3] what it
-- returned: 1, a site's first email; 2, one counted against the total).
-- A day that ended meanwhile is not touched: its keys are gone, and the
-- new day's are not this email's.
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[2], 'site:' .. ARGV[2])
elseif redis.call('EXISTS', KEYS[1]) == 1 and redis.call('DECR', KEYS[1]) <= 0 then
  redis.call('DEL', KEYS[1])
end
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
