ALTER TABLE email_outbox
    DROP COLUMN tracestate,
    DROP COLUMN traceparent;
