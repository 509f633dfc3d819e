//! Integration tests against real PostgreSQL and Redis (see `common`).
//! One test binary, so the suite links once.

mod common;

mod abuse;
mod address;
mod api;
mod cli;
mod cluster;
mod compat;
mod docs;
mod edges;
mod email;
mod foundation;
mod hardening;
mod healthcheck;
mod metrics;
mod signup;
mod smtp;
