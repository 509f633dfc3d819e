-- A code proves the inbox (docs/LIMITS.md "The owner of an address"):
-- a live code emailed to an inbox activates any password registered for
-- an address that reaches it, so every code carries its inbox (the folded
-- mailbox, the same text `address::Inboxes` computes), its length, and,
-- for a long code that later registrants of the inbox are sent again, the
-- code itself sealed under a key derived from SECRET_KEY (src/seal.rs).
--
-- Codes issued before this change belong to no inbox; they live a minute,
-- so they are superseded here with the emails still queued for them, and
-- their users ask for a new code (as the sealed-payload migration did).
UPDATE activation_codes SET superseded_at = now()
 WHERE used_at IS NULL AND superseded_at IS NULL;
UPDATE email_outbox
   SET status = 'expired', finished_at = now(), payload = NULL,
       last_error = 'queued before codes proved the inbox'
 WHERE status = 'queued' AND kind = 'email';

ALTER TABLE activation_codes
    ADD COLUMN inbox  TEXT,
    ADD COLUMN digits SMALLINT CHECK (digits BETWEEN 4 AND 8),
    ADD COLUMN sealed BYTEA,
    -- Sent again to another registrant of the inbox: no longer its
    -- creator's alone, so its creator's resend re-sends it rather than
    -- replacing it.
    ADD COLUMN shared BOOLEAN NOT NULL DEFAULT FALSE,
    ADD CONSTRAINT activation_codes_inbox_known
        CHECK ((inbox IS NULL) = (digits IS NULL));

-- A superseded long code still proves the inbox to the inbox's other
-- registrants (only its own registrant's newer code replaces it for that
-- registrant), so one may be used after it was superseded.
ALTER TABLE activation_codes DROP CONSTRAINT activation_codes_check;

-- An activation compares a code with the inbox's live codes; an issuer
-- looks at them to pick the next code's length. Partial: used codes (most
-- rows) cost nothing here.
CREATE INDEX activation_codes_live_by_inbox_idx
    ON activation_codes (inbox, expires_at) WHERE used_at IS NULL;

-- A claim is ended, not deleted, when the account is activated or
-- registered afresh: codes it was sent may have been sent to others of the
-- inbox too, and stay theirs until they expire. `purge` deletes ended
-- claims with the spent codes.
ALTER TABLE claims ADD COLUMN ended_at TIMESTAMPTZ;
DROP INDEX claims_user_id_idx;
CREATE INDEX claims_live_by_user_idx ON claims (user_id, id) WHERE ended_at IS NULL;
CREATE INDEX claims_ended_at_idx ON claims (ended_at) WHERE ended_at IS NOT NULL;

-- Keys of the service's own that must outlive a SECRET_KEY rotation, each
-- sealed under a key derived from SECRET_KEY (re-sealed under the new one
-- when an old one in SECRET_KEY_FALLBACKS opened it): today the key that
-- names Redis keys, so that a Redis dump names nobody and counters survive
-- a rotation.
CREATE TABLE service_keys (
    name       TEXT        PRIMARY KEY,
    sealed     BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- When each older key (SECRET_KEY_FALLBACKS) last verified a code or
-- opened a sealed value, by the key's fingerprint (never the key): `config
-- check` tells an operator when a fallback can be dropped.
CREATE TABLE secret_key_uses (
    fingerprint  TEXT        PRIMARY KEY,
    last_used_at TIMESTAMPTZ NOT NULL
);
