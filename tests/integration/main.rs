//! Integration tests against real PostgreSQL and Redis (see `common`).
//! One test binary, so the suite links once. The modules follow what a
//! user or an operator does: register, sign in, resend, activate, receive
//! the email; run the commands; run and watch the service.

mod common;

mod activate;
mod adversary;
mod claims;
mod cli;
mod cli_config;
mod compat;
mod disclosure;
mod email;
mod email_languages;
mod email_mailbox;
mod email_smtp;
mod events;
mod operations;
mod operations_failover;
mod operations_monitoring;
mod operations_redis_ha;
mod owner;
mod passwords;
mod register;
mod resend;
mod sign_in;
mod signup;
mod traces;
