-- The provider's status of the last failed attempt (HTTP status, or SMTP
-- reply code), beside `last_error`, its short reason: support sees "550"
-- without parsing text, and a permanent refusal is told from a timeout.
ALTER TABLE email_outbox ADD COLUMN last_status INTEGER;
