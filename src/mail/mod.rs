//! Email delivery: the activation templates, the transports that deliver a
//! message, the outbox dispatcher that drives them, and the listener that
//! wakes it.

pub mod dispatcher;
pub mod listener;
pub mod templates;
pub mod transport;
