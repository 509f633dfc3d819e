-- Activation codes, stored only as HMAC-SHA256(SECRET_KEY, user id ":" code).
CREATE TABLE activation_codes (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash     BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    superseded_at TIMESTAMPTZ,
    CHECK (used_at IS NULL OR superseded_at IS NULL)
);

-- At most one live (neither used nor superseded) code per user: issuing a new
-- code must supersede the old one in the same transaction, and two concurrent
-- issuers cannot both leave a live code behind.
CREATE UNIQUE INDEX activation_codes_one_live_per_user_idx
    ON activation_codes (user_id)
    WHERE used_at IS NULL AND superseded_at IS NULL;

-- Lookups by user for `user show`, and the foreign key's cascade.
CREATE INDEX activation_codes_user_id_idx ON activation_codes (user_id);
-- `purge` deletes codes past their expiry.
CREATE INDEX activation_codes_expires_at_idx ON activation_codes (expires_at);
