-- Only emails wake the dispatchers at commit. Signalling every listening
-- backend at an activation's commit cost the activation about half a
-- millisecond (p50, two cores); events need no such haste, and a dispatcher
-- that posts them looks for them every half second instead. A row trigger
-- with a WHEN clause costs an event's insert nothing; pg_notify folds the
-- identical notifications of one transaction into one.
DROP TRIGGER email_outbox_notify ON email_outbox;
CREATE TRIGGER email_outbox_notify
    AFTER INSERT ON email_outbox
    FOR EACH ROW WHEN (NEW.kind = 'email') EXECUTE FUNCTION email_outbox_notify();
