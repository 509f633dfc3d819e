DROP INDEX email_outbox_queued_by_inbox_idx;
ALTER TABLE email_outbox DROP COLUMN inbox;
