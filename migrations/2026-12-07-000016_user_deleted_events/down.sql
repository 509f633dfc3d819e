DELETE FROM email_outbox WHERE user_id IS NULL;
ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_email_has_user;
ALTER TABLE email_outbox ALTER COLUMN user_id SET NOT NULL;
