-- A pending account's lifetime budget of failed activations
-- (ACTIVATION_MAX_FAILURES): counted here, not in Redis, so that it survives
-- lockouts, new codes and a Redis restart. `activator user unlock` and a
-- fresh registration of an expired pending account set it back to zero.
ALTER TABLE users
    ADD COLUMN failed_activations INTEGER NOT NULL DEFAULT 0
        CHECK (failed_activations >= 0);
