-- Events for the rest of the system (a webhook per event, signed per the
-- Standard Webhooks specification) share the outbox with the emails: the
-- same transaction as what they tell, the same dispatcher, window, retries,
-- lease and dead letter. An event's payload is its JSON body, which holds
-- no secret (no password, hash or code); an email's stays sealed.
ALTER TABLE email_outbox
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'email' CHECK (kind IN ('email', 'event')),
    ADD COLUMN event_type TEXT,
    ADD CONSTRAINT email_outbox_event_type CHECK ((kind = 'event') = (event_type IS NOT NULL));
