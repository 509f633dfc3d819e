-- The W3C trace context (traceparent, tracestate) of the request that
-- queued a message, so that its delivery, whenever and wherever it runs
-- (another instance, after a restart), belongs to that request's trace.
-- NULL when traces were off. Neither names anybody: ids and flags, and the
-- tracing vendors' own state.
ALTER TABLE email_outbox
    ADD COLUMN traceparent TEXT,
    ADD COLUMN tracestate TEXT;
