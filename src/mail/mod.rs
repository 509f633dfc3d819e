//! Email: the activation templates, the transports that deliver a message,
//! the outbox dispatcher, and the local development mailbox.

pub mod dispatcher;
pub mod mailbox;
pub mod templates;
pub mod transport;

pub use templates::{Rendered, Templates};
pub use transport::{Envelope, Transport};
