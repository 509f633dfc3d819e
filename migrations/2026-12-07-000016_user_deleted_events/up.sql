-- A user.deleted event outlives its account: its row names no user (the
-- account's other rows still go with it, ON DELETE CASCADE). An email
-- always belongs to an account.
ALTER TABLE email_outbox ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE email_outbox
    ADD CONSTRAINT email_outbox_email_has_user CHECK (kind = 'event' OR user_id IS NOT NULL);
