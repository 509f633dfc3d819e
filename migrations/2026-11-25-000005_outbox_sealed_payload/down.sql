-- Sealed payloads cannot be turned back into bodies here: queued messages
-- are expired, as the upgrade did with the old ones.
UPDATE email_outbox
   SET status = 'expired', finished_at = now(), payload = NULL,
       last_error = 'queued before the downgrade from sealed messages'
 WHERE status = 'queued';

ALTER TABLE email_outbox
    DROP CONSTRAINT email_outbox_payload_while_queued,
    DROP COLUMN payload,
    ADD COLUMN subject TEXT NOT NULL DEFAULT '',
    ADD COLUMN body_text TEXT,
    ADD COLUMN body_html TEXT;
ALTER TABLE email_outbox ALTER COLUMN subject DROP DEFAULT;
