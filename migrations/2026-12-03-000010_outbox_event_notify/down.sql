DROP TRIGGER email_outbox_notify ON email_outbox;
CREATE TRIGGER email_outbox_notify
    AFTER INSERT ON email_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION email_outbox_notify();
