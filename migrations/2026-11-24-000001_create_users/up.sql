-- One row per person. `email` holds the normalized address (trimmed,
-- lower-cased); the CHECK keeps every writer honest about that, so the UNIQUE
-- constraint is what makes "one account per address" hold under concurrent
-- registrations.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT        NOT NULL UNIQUE CHECK (email = lower(btrim(email)) AND email <> ''),
    password_hash TEXT        NOT NULL,
    is_active     BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    activated_at  TIMESTAMPTZ,
    CHECK (is_active = (activated_at IS NOT NULL))
);

-- `purge --unactivated-older-than` looks for old pending accounts.
CREATE INDEX users_pending_created_at_idx ON users (created_at) WHERE NOT is_active;
