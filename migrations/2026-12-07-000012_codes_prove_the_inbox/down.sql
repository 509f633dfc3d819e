DROP TABLE secret_key_uses;
DROP TABLE service_keys;
DROP INDEX claims_ended_at_idx;
DROP INDEX claims_live_by_user_idx;
DELETE FROM claims WHERE ended_at IS NOT NULL;
ALTER TABLE claims DROP COLUMN ended_at;
CREATE INDEX claims_user_id_idx ON claims (user_id, id);
DROP INDEX activation_codes_live_by_inbox_idx;
ALTER TABLE activation_codes
    DROP CONSTRAINT activation_codes_inbox_known,
    DROP COLUMN shared,
    DROP COLUMN sealed,
    DROP COLUMN digits,
    DROP COLUMN inbox;
UPDATE activation_codes SET superseded_at = NULL WHERE used_at IS NOT NULL AND superseded_at IS NOT NULL;
ALTER TABLE activation_codes ADD CHECK (used_at IS NULL OR superseded_at IS NULL);
