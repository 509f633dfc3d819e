//! Every request, seen from outside: an `X-Request-Id` on its answer, one
//! access-log line, the HTTP metrics, and with traces on its server span.
//!
//! The id is the caller's `X-Request-Id` when it is sane (see
//! [`RequestId::sane`]), else a fresh random one; it ties a client's report
//! to the log line. The line holds the method, the route template, the
//! status, the time taken and the id: never a path with its query, a body,
//! a header value but the id, or a client address.
//!
//! With traces on (`crate::traces`), each request has a server span named
//! for its method and route template (`POST /auth/register`), with the HTTP
//! semantic conventions' `http.request.method`, `http.route` and
//! `http.response.status_code`, and beside it the span the log shows, which
//! carries only the `trace_id`: every line logged while the route runs
//! (its guards, its handler, its responder: [`traced`]) and the access line
//! carry it. An incoming `traceparent` is continued only from a trusted
//! proxy (`TRUSTED_PROXIES`, the peers whose `X-Forwarded-For` is believed):
//! a trace's context is a claim like a forwarded address, and one from
//! anybody could join their requests to somebody else's trace or have every
//! request of theirs recorded; from other peers it starts a trace of its
//! own. A `traceparent` that does not parse starts one too.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::route::{Handler, Outcome, Route};
use rocket::{Data, Request, Response};
use tracing::Instrument;

use crate::traces::context;

/// The header that carries a request's id, both ways.
pub const HEADER: &str = "X-Request-Id";

/// The longest id taken from a caller.
const MAX_ID_LEN: usize = 128;

/// What a request label reads for a request no route took (an unknown path,
/// a method the path does not have, a request Rocket could not parse): the
/// raw path would let any client invent series.
pub const UNMATCHED: &str = "unmatched";

/// A request's id, arrival time and spans, kept in its local cache.
struct Arrival {
    at: Instant,
    id: String,
    /// With traces on, until the answer ends them.
    spans: Mutex<Option<Spans>>,
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
            spans: Mutex::new(crate::traces::enabled().then(|| Spans::of(request))),
        }
    }

    /// The request's spans, if it has them.
    fn spans(&self) -> Option<Spans> {
        self.lock().clone()
    }

    /// Takes the request's spans, to end them.
    fn end_spans(&self) -> Option<Spans> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Spans>> {
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request's server span, and the span the log shows inside it.
#[derive(Clone)]
struct Spans {
    server: tracing::Span,
    log: tracing::Span,
}

impl Spans {
    fn of(request: &Request<'_>) -> Self {
        let method = request.method().as_str();
        // Renamed for its route once routed; a request no route takes keeps
        // its method alone, as the conventions say.
        let server = tracing::info_span!("request", otel.name = method, otel.kind = "server");
        if trusted_peer(request) {
            let headers = request.headers();
            context::continue_trace(
                &server,
                headers.get_one("traceparent"),
                headers.get_one("tracestate"),
            );
        }
        crate::traces::set_attribute(&server, "http.request.method", method);
        let log = match context::trace_id(&server) {
            Some(trace_id) => tracing::info_span!(parent: &server, "request", trace_id = %trace_id),
            None => tracing::Span::none(),
        };
        Self { server, log }
    }

    /// Names the server span for the route that answered, with its status.
    fn answered(&self, method: &str, route: Option<&str>, status: u16) {
        if let Some(route) = route {
            crate::traces::set_name(&self.server, format!("{method} {route}"));
            crate::traces::set_attribute(&self.server, "http.route", route.to_owned());
        }
        crate::traces::set_attribute(&self.server, "http.response.status_code", i64::from(status));
        // A server span fails for a 5xx only: a 4xx is the client's.
        if status >= 500 {
            crate::traces::set_error(&self.server, status.to_string());
        }
    }
}

/// Whether the request's peer is a trusted proxy (`TRUSTED_PROXIES`).
fn trusted_peer(request: &Request<'_>) -> bool {
    let Some(network) = request.rocket().state::<super::client::Network>() else {
        return false;
    };
    // Rocket's local test client has no peer: loopback, as for the limits.
    let peer = request
        .remote()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |addr| addr.ip());
    network.trusts(peer)
}

/// `routes` with each handler run inside its request's spans, so that its
/// request guards, its body and its responder, and everything they call,
/// are in the request's trace and their log lines carry its `trace_id`.
pub fn traced(routes: Vec<Route>) -> Vec<Route> {
    routes
        .into_iter()
        .map(|mut route| {
            route.handler = Box::new(Traced(route.handler));
            route
        })
        .collect()
}

/// A route's handler, run inside its request's spans.
#[derive(Clone)]
struct Traced(Box<dyn Handler>);

#[rocket::async_trait]
impl Handler for Traced {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let spans = request.local_cache(|| Arrival::of(request)).spans();
        let handled = self.0.handle(request, data);
        match spans {
            // Both entered while it runs: the log's span for the log lines,
            // the server span for the spans made inside (the layers see
            // one each).
            Some(spans) => handled.instrument(spans.log).instrument(spans.server).await,
            None => handled.await,
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
        // The spans end with the answer, once the line is written in them.
        let spans = arrival.end_spans();
        if let Some(spans) = &spans {
            spans.answered(
                method,
                request.route().map(|route| route.uri.path()),
                status,
            );
        }
        let log = spans
            .as_ref()
            .map_or(tracing::Span::none(), |spans| spans.log.clone());
        tracing::info!(
            target: "activator::access",
            parent: &log,
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
