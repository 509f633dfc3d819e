//! Every request, seen from outside: an `X-Request-Id` on its answer, one
//! access-log line, and the HTTP metrics.
//!
//! The id is the caller's `X-Request-Id` when it is sane (see
//! [`RequestId::sane`]), else a fresh random one; it ties a client's report
//! to the log line. The line holds the method, the route template, the
//! status, the time taken and the id: never a path with its query, a body,
//! a header value but the id, or a client address.

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Data, Request, Response};

/// The header that carries a request's id, both ways.
pub const HEADER: &str = "X-Request-Id";

/// The longest id taken from a caller.
const MAX_ID_LEN: usize = 128;

/// What a request label reads for a request no route took (an unknown path,
/// a method the path does not have, a request Rocket could not parse): the
/// raw path would let any client invent series.
pub const UNMATCHED: &str = "unmatched";

/// A request's id and arrival time, kept in its local cache.
struct Arrival {
    at: Instant,
    id: String,
}

impl Arrival {
    fn of(request: &Request<'_>) -> Self {
        let id = request
            .headers()
            .get_one(HEADER)
            .filter(|id| RequestId::sane(id))
            .map_or_else(RequestId::generate, str::to_owned);
        Self {
            at: Instant::now(),
            id,
        }
    }
}

/// Request ids.
pub struct RequestId;

impl RequestId {
    /// An id taken from a caller: 1 to 128 characters from a set that
    /// cannot break a log line or a header (letters, digits, `-_.:/+=@`).
    pub fn sane(id: &str) -> bool {
        (1..=MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
    }

    /// A fresh id: 128 random bits in hex.
    pub fn generate() -> String {
        format!("{:032x}", rand::random::<u128>())
    }
}

/// The fairing; attach it first, so its clock starts before other work.
pub struct Access;

#[rocket::async_trait]
impl Fairing for Access {
    fn info(&self) -> Info {
        Info {
            name: "request ids, access log, HTTP metrics",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        request.local_cache(|| Arrival::of(request));
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        // A request Rocket could not parse skipped `on_request`: its clock
        // starts now.
        let arrival = request.local_cache(|| Arrival::of(request));
        let took = arrival.at.elapsed();
        let method = request.method().as_str();
        let route = request.route().map_or(UNMATCHED, |route| route.uri.path());
        let status = response.status().code;
        response.set_header(Header::new(HEADER, arrival.id.clone()));
        crate::metrics::get().request(method, route, status, took);
        if let Some(headers) = crate::logging::NOT_UTF8_HEADERS.due() {
            tracing::warn!(
                headers,
                "request headers that were not UTF-8 were dropped (Rocket reads only UTF-8)"
            );
        }
        tracing::info!(
            target: "activator::access",
            method,
            route,
            status,
            duration_ms = took.as_secs_f64() * 1000.0,
            request_id = %arrival.id,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_taken_from_callers() {
        for id in ["abc", "0f3c-11ee:be56/req=1", "a@b.c+1", &"x".repeat(128)] {
            assert!(RequestId::sane(id), "{id}");
        }
        for id in [
            "",
            "with space",
            "new\nline",
            "quote\"",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!RequestId::sane(id), "{id:?}");
        }
        let generated = RequestId::generate();
        assert!(RequestId::sane(&generated) && generated.len() == 32);
        assert_ne!(generated, RequestId::generate());
    }
}
