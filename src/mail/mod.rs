//! Email delivery: the activation templates and the choice of their
//! language, the transports that deliver a message (an HTTP email API or
//! SMTP), the outbox dispatcher that drives them, and the listener that
//! wakes it.

pub mod dispatcher;
pub mod listener;
pub mod locale;
pub mod templates;
pub mod transport;
