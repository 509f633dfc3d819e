//! Email delivery: the activation templates in each language, the
//! transports that deliver a message (an HTTP email API or SMTP), the
//! policy of one delivery (`courier`), the outbox dispatcher that keeps a
//! window of them in flight, and the listener that wakes it.

pub mod courier;
pub mod dispatcher;
pub mod listener;
pub mod templates;
pub mod transport;
