DROP TRIGGER email_outbox_notify ON email_outbox;
DROP FUNCTION email_outbox_notify();
DROP TABLE email_outbox;
