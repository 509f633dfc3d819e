//! Getting spans to the collector without holding anything up: the HTTP
//! client the OTLP exporter posts with (ureq, on the batch processor's own
//! thread), a bounded queue whose overflow is counted instead of waited
//! for, and the count of spans a collector did not take.
//!
//! The SDK's batch processor keeps its drops to itself (a private count,
//! logged at shutdown), so spans are admitted here first: at most
//! `OTEL_BSP_MAX_QUEUE_SIZE` wait between a span's end and its export, the
//! processor's own queue is as large, and so it never drops one unseen.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

use crate::quieted::Quieted;

/// How long connecting to the collector may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one post may take, answer included (the exporter retries
/// within its own `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default).
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read: an export's answer is a few
/// bytes (a partial success at most).
const ANSWER_LIMIT: u64 = 64 * 1024;

/// Failed exports, said once and then at most once a minute: a collector
/// that is down fails every few seconds.
static FAILED: Quieted = Quieted::new(Duration::from_secs(60));

/// The exporter's HTTP client: ureq, which the email API already uses, so
/// the exporter brings no HTTP stack of its own. Blocking is right here:
/// the batch processor calls the exporter on its own thread.
#[derive(Debug, Clone)]
pub(super) struct Client(ureq::Agent);

impl Client {
    pub(super) fn new() -> Self {
        Self(
            ureq::Agent::config_builder()
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(Some(POST_TIMEOUT))
                // The exporter reads the status itself (429, 502, 503 and
                // 504 are retried, with Retry-After): every answer must come
                // back as one.
                .http_status_as_error(false)
                .max_redirects(0)
                .max_idle_connections(1)
                .max_idle_connections_per_host(1)
                .user_agent(concat!("activator/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
        )
    }

    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self.0.run(Request::from_parts(parts, &body[..]))?;
        let (parts, mut body) = response.into_parts();
        let bytes = body.with_config().limit(ANSWER_LIMIT).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

impl HttpClient for Client {
    // The trait is declared with `async_trait`; this is what that expands
    // to. The post blocks the batch thread, which exists for it.
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move { self.post(request) })
    }
}

/// Says once, in the background, whether the collector at `endpoint` takes
/// an (empty) export: an endpoint that is unreachable at start-up is one
/// line in the log, and start-up goes on meanwhile.
pub(super) fn probe(client: Client, endpoint: String) {
    let shown = crate::settings::redact_url(&endpoint);
    let probed = std::thread::Builder::new()
        .name("traces-probe".into())
        .spawn(move || {
            let request = Request::post(endpoint.as_str())
                .header("Content-Type", "application/x-protobuf")
                .body(Bytes::new());
            let problem = match request.map_err(HttpError::from).and_then(|r| client.post(r)) {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) => format!("it answers {}", answer.status().as_u16()),
                Err(err) => err.to_string(),
            };
            // One line, whether this or the first failed export says it;
            // then nothing new for a while.
            if FAILED.count().is_some() {
                tracing::warn!(
                    endpoint = shown,
                    error = problem,
                    "cannot export traces; serving anyway, spans are dropped and counted (activator_trace_spans_dropped_total) until the collector takes them"
                );
            }
        });
    if let Err(err) = probed {
        tracing::warn!(error = %err, "cannot check the traces endpoint");
    }
}

/// The spans ended and not yet handed to the exporter, and how many may be.
#[derive(Debug, Clone)]
pub(super) struct Queue(Arc<Places>);

#[derive(Debug)]
struct Places {
    taken: AtomicUsize,
    capacity: usize,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> Self {
        Self(Arc::new(Places {
            taken: AtomicUsize::new(0),
            capacity,
        }))
    }

    /// Takes a place for one span, if one is free.
    fn take(&self) -> bool {
        let places = &self.0;
        places
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < places.capacity).then_some(taken + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        let _ = self
            .0
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                Some(taken.saturating_sub(n))
            });
    }
}

/// The batch processor behind the queue's admission: a span that finds no
/// place is dropped and counted at once, never waited for.
#[derive(Debug)]
pub(super) struct Admitted {
    batch: BatchSpanProcessor,
    queue: Queue,
}

impl Admitted {
    pub(super) fn new(batch: BatchSpanProcessor, queue: Queue) -> Self {
        Self { batch, queue }
    }
}

impl SpanProcessor for Admitted {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.batch.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.take() {
            self.batch.on_end(span);
        } else {
            crate::metrics::get().spans_dropped("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.batch.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.batch.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.batch.set_resource(resource);
    }
}

/// Lowers the priority of the thread that encodes and posts batches (the
/// batch processor's own, where [`Counted::export`] runs), once: an export
/// is a burst of work that a saturated machine should give to requests
/// first. Spans only wait longer for the collector (Linux, where a
/// thread's nice value is its own; elsewhere nothing changes).
fn yield_to_requests() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if LOWERED.replace(true) {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take and return plain integers; the
    // thread id names the calling thread, whose nice value alone changes.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, thread, EXPORT_NICE) != 0 {
            tracing::debug!("cannot lower the trace exporter's priority");
        }
    }
}

/// The nice value of the exporting thread (19 is the lowest priority).
#[cfg(target_os = "linux")]
const EXPORT_NICE: libc::c_int = 10;

/// The OTLP exporter, giving back the queue's places of each batch it is
/// handed and counting the spans of a batch the collector did not take
/// (after the exporter's own retries).
#[derive(Debug)]
pub(super) struct Counted<E> {
    exporter: E,
    queue: Queue,
}

impl<E> Counted<E> {
    pub(super) fn new(exporter: E, queue: Queue) -> Self {
        Self { exporter, queue }
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        yield_to_requests();
        let spans = batch.len();
        self.queue.give_back(spans);
        let exported = self.exporter.export(batch).await;
        if let Err(err) = &exported {
            crate::metrics::get().spans_dropped("export_failed", spans);
            if let Some(failures) = FAILED.count() {
                tracing::warn!(
                    failures,
                    error = %err,
                    "cannot export traces; their spans are dropped and counted (activator_trace_spans_dropped_total)"
                );
            }
        }
        exported
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    // The exporter learns the service's resource only this way: without
    // it every span would leave without `service.name`.
    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread.
    #[cfg(target_os = "linux")]
    fn nice() -> libc::c_int {
        // SAFETY: plain integers in and out; the id names this thread.
        unsafe {
            let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, thread)
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_exporting_thread_gives_way_and_no_other_thread_does() {
        let base = nice();
        let (exporting, other) = std::thread::scope(|scope| {
            let exporting = scope.spawn(|| {
                yield_to_requests();
                yield_to_requests();
                nice()
            });
            let other = scope.spawn(nice);
            (exporting.join().unwrap(), other.join().unwrap())
        });
        assert_eq!(exporting, EXPORT_NICE.max(base));
        assert_eq!(other, base);
        assert_eq!(nice(), base);
    }

    #[test]
    fn the_queue_admits_its_capacity_and_takes_more_once_given_back() {
        let queue = Queue::new(2);
        assert!(queue.take() && queue.take());
        assert!(!queue.take(), "full");
        queue.give_back(1);
        assert!(queue.take());
        queue.give_back(5);
        assert!(queue.take() && queue.take() && !queue.take());
    }
}
