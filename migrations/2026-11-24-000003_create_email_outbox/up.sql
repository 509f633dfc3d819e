-- Transactional outbox: an email is written here in the same transaction as
-- the user/code it belongs to, and the dispatcher delivers it afterwards.
CREATE TABLE email_outbox (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient       TEXT        NOT NULL,
    subject         TEXT        NOT NULL,
    -- The bodies carry the activation code; they are set to NULL once the
    -- message is sent, dead or expired so no code rests in the database.
    body_text       TEXT,
    body_html       TEXT,
    status          TEXT        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sent', 'dead', 'expired')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When the code in the message expires: sending after that is pointless.
    expires_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    -- When the message may next be claimed. A claim moves it forward by the
    -- lease, so a message whose sender crashed mid-send becomes due again when
    -- the lease runs out; a failed send moves it to the retry time.
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    last_error      TEXT,
    CHECK ((status = 'queued') = (finished_at IS NULL))
);

-- The dispatcher's claim: due queued messages in order. Partial, so finished
-- rows (the vast majority) cost nothing here.
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at) WHERE status = 'queued';
-- `user show` reads a user's latest message; the cascade from users.
CREATE INDEX email_outbox_user_id_idx ON email_outbox (user_id, id);
-- `purge` deletes finished messages past their retention.
CREATE INDEX email_outbox_finished_at_idx ON email_outbox (finished_at) WHERE status <> 'queued';

-- Wake dispatchers (in this or any other `serve` instance) when a message is
-- queued. NOTIFY is transactional: it is delivered at commit, so a listener
-- never looks for a row it cannot see yet. Identical notifications within one
-- transaction are folded into one.
CREATE FUNCTION email_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('email_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER email_outbox_notify
    AFTER INSERT ON email_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION email_outbox_notify();
