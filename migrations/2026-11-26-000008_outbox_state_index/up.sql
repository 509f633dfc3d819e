-- The outbox gauges: messages per state (an index-only count) and the
-- oldest queued message (the first entry under 'queued').
CREATE INDEX email_outbox_status_created_at_idx ON email_outbox (status, created_at);
