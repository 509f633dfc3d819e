ALTER TABLE email_outbox DROP COLUMN last_status;
