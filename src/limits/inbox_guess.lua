-- An inbox's budget of guessing odds (docs/LIMITS.md "Guessing odds per
-- inbox"), in units of 10^-8: comparing a typed code with a stored code of
-- d digits costs 10^(8-d). KEYS[1] and KEYS[2] count the units of the
-- calendar's day and of its 365-day period; KEYS[3] is a hash of the
-- registrants (a first registration or a claim) whose first attempt was
-- paid for when their short code was issued.
-- ARGV: the mode, the cost, the day's limit and end (ms since the epoch),
-- the period's limit and end, the registrant, whether this is its first
-- attempt ('1'), and how long a prepaid first attempt is kept (ms).
--   'prepay' (a short code is being issued): 1 when the registrant's
--     first attempt is paid already, or is paid now; for a registrant that
--     has attempted before, 1 when the budget has room (nothing taken);
--     else 0 (the code is issued long).
--   'pay' (a code is about to be compared): 2 when the registrant's first
--     attempt was prepaid (that prepayment is used up), 1 when the budget
--     pays for it now, 0 when it has no room (the code is not compared).
local cost = tonumber(ARGV[2])
local function room()
  return tonumber(redis.call('GET', KEYS[1]) or '0') + cost <= tonumber(ARGV[3])
    and tonumber(redis.call('GET', KEYS[2]) or '0') + cost <= tonumber(ARGV[5])
end
local function take()
  redis.call('INCRBY', KEYS[1], cost)
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
  redis.call('INCRBY', KEYS[2], cost)
  redis.call('PEXPIREAT', KEYS[2], ARGV[6])
end
if ARGV[1] == 'prepay' then
  if redis.call('HEXISTS', KEYS[3], ARGV[7]) == 1 then return 1 end
  if not room() then return 0 end
  if ARGV[8] == '1' then
    take()
    redis.call('HSET', KEYS[3], ARGV[7], 1)
    redis.call('PEXPIRE', KEYS[3], ARGV[9])
  end
  return 1
end
if ARGV[8] == '1' and redis.call('HDEL', KEYS[3], ARGV[7]) == 1 then return 2 end
if not room() then return 0 end
take()
return 1
