//! Email delivery: the activation templates, the transports that deliver a
//! message, and the outbox dispatcher that drives them.

pub mod dispatcher;
pub mod templates;
pub mod transport;
