//! The HTTP API: routes per resource, request guards, the error type.

pub mod access;
pub mod auth;
pub mod client;
pub mod docs;
pub mod error;
pub mod health;
pub mod metrics;
pub mod request;

use rocket::{Catcher, Route, catchers, routes};

/// Every route of the API, mounted at `/`, each run in its request's
/// spans (`access::traced`).
pub fn routes() -> Vec<Route> {
    access::traced(routes![
        auth::register,
        auth::resend,
        auth::activate,
        health::live,
        health::check,
        docs::openapi,
        docs::docs,
        docs::init_js,
        docs::scalar_js,
    ])
}

/// The catcher that gives every error Rocket answers itself the API's JSON
/// shape.
pub fn catchers() -> Vec<Catcher> {
    catchers![error::default_catcher]
}
