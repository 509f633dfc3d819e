-- Gives back one count of KEYS[1] (a reservation not used); a counter that
-- expired meanwhile is not brought back below zero.
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
