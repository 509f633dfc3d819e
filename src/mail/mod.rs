//! Email delivery: the activation templates in each language, the
//! transports that deliver a message (an HTTP email API or SMTP), the
//! policy of one delivery (`courier`), the outbox dispatcher that keeps a
//! window of them in flight, the listener that wakes it, and the signed
//! events the same outbox delivers to `WEBHOOK_URL` (`webhook`).

pub mod courier;
pub mod dispatcher;
pub mod listener;
pub mod templates;
pub mod transport;
pub mod webhook;
