ALTER TABLE email_outbox DROP COLUMN claim_id;
DELETE FROM activation_codes WHERE claim_id IS NOT NULL;
DROP INDEX activation_codes_one_live_per_claim_idx;
ALTER TABLE activation_codes DROP COLUMN claim_id;
CREATE UNIQUE INDEX activation_codes_one_live_per_user_idx
    ON activation_codes (user_id)
    WHERE used_at IS NULL AND superseded_at IS NULL;
DROP TABLE claims;
