-- Claims, not first come (docs/API.md "Claims"): a registration for an
-- address whose registration is pending records a claim of its own, with its
-- own password hash, language, code and failure budget. The first
-- registration stays in `users`; later ones are rows here. Whoever activates
-- with a claim's password and that claim's code wins: the account takes the
-- claim's password and every claim ends.
CREATE TABLE claims (
    id                 BIGSERIAL   PRIMARY KEY,
    user_id            BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash      TEXT        NOT NULL,
    locale             TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    failed_activations INTEGER     NOT NULL DEFAULT 0 CHECK (failed_activations >= 0),
    -- Where the claim came from (an IPv4 address, an IPv6 /48; '-' for an
    -- exempt client): a new claim replaces its own site's older one.
    network            TEXT        NOT NULL DEFAULT '-'
);
CREATE INDEX claims_user_id_idx ON claims (user_id, id);

-- A code belongs to the first registration (NULL) or to one claim, and
-- verifies only that one: one live code per registration or claim.
ALTER TABLE activation_codes
    ADD COLUMN claim_id BIGINT REFERENCES claims (id) ON DELETE CASCADE;
DROP INDEX activation_codes_one_live_per_user_idx;
CREATE UNIQUE INDEX activation_codes_one_live_per_claim_idx
    ON activation_codes (user_id, COALESCE(claim_id, 0))
    WHERE used_at IS NULL AND superseded_at IS NULL;

-- An email carries the claim its code belongs to, so that a new code for one
-- claim supersedes that claim's queued emails only.
ALTER TABLE email_outbox ADD COLUMN claim_id BIGINT;
