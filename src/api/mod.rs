//! The HTTP API: routes per resource, request guards, the error type.

pub mod auth;
pub mod docs;
pub mod error;
pub mod health;
pub mod request;

use rocket::{Catcher, Route, catchers, routes};

pub fn routes() -> Vec<Route> {
    routes![
        auth::register,
        auth::resend,
        auth::activate,
        health::live,
        health::check,
        docs::openapi,
        docs::docs,
        docs::scalar_js,
    ]
}

pub fn catchers() -> Vec<Catcher> {
    catchers![error::default_catcher]
}
