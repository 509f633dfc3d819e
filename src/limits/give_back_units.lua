-- Gives back `ARGV[1]` units of an inbox's guessing budget (KEYS: the day's
-- and the year's), for a code that turned out right: never below zero.
for i = 1, #KEYS do
  if redis.call('DECRBY', KEYS[i], ARGV[1]) <= 0 then redis.call('DEL', KEYS[i]) end
end
return 1
