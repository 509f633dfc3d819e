DELETE FROM email_outbox WHERE kind = 'event';
ALTER TABLE email_outbox
    DROP CONSTRAINT email_outbox_event_type,
    DROP COLUMN event_type,
    DROP COLUMN kind;
