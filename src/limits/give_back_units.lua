-- Gives back `ARGV[1]` units of an inbox's guessing budget (KEYS: the day's
-- and the period's it was taken from), for a code that turned out right: a
-- day or period that ended meanwhile is not touched; never below zero.
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('DECRBY', KEYS[i], ARGV[1]) <= 0 then
    redis.call('DEL', KEYS[i])
  end
end
return 1
