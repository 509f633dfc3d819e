-- One inbox's emails leave in the order they were queued: an email is not
-- claimed while an older one to the same inbox is still queued (sent,
-- retried or in flight), so the newest code in an inbox is the newest one
-- issued (docs/LIMITS.md "The owner of an address"). `inbox` is the folded
-- mailbox the limits count (`address::Inboxes::of`); NULL for events and
-- for emails queued before it (they go as before).
ALTER TABLE email_outbox ADD COLUMN inbox TEXT;
CREATE INDEX email_outbox_queued_by_inbox_idx
    ON email_outbox (inbox, id) WHERE status = 'queued' AND kind = 'email';
