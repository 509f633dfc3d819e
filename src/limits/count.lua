-- Fixed windows: KEYS are counters, ARGV their limits and windows (ms) in
-- pairs; a window of 0 marks a counter that is only checked, not counted.
-- When any counter is full, counts nothing and returns `{i, pttl}` for the
-- first full one (i from 1); else counts one in each counted one and
-- returns `{0, 0}`.
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= tonumber(ARGV[2 * i - 1]) then
    return {i, redis.call('PTTL', KEYS[i])}
  end
end
for i = 1, #KEYS do
  if ARGV[2 * i] ~= '0' and redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return {0, 0}
