-- No code rests in the database in plaintext: a message now holds only its
-- code and locale, sealed under a key derived from SECRET_KEY (see
-- src/seal.rs), and the dispatcher renders the email when it sends it.
--
-- Messages queued in the old format cannot be sealed here (SQL has no key).
-- Their codes live a minute, so they are expired; their users can ask for a
-- new code.
UPDATE email_outbox
   SET status = 'expired', finished_at = now(),
       last_error = 'queued before the upgrade to sealed messages'
 WHERE status = 'queued';

ALTER TABLE email_outbox
    DROP COLUMN subject,
    DROP COLUMN body_text,
    DROP COLUMN body_html,
    ADD COLUMN payload BYTEA,
    -- Queued messages carry their sealed payload; finished ones none.
    ADD CONSTRAINT email_outbox_payload_while_queued
        CHECK ((status = 'queued') = (payload IS NOT NULL));
