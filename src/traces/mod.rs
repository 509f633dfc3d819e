//! Traces: OpenTelemetry over OTLP/HTTP (protobuf), off unless an endpoint
//! is set (`settings::TraceSettings`, the standard `OTEL_*` variables).
//!
//! Spans are `tracing` spans, turned into OpenTelemetry's by
//! `tracing-opentelemetry`: the code that does the work names its span where
//! it does it (`api::access` the request's, `limits` each check, `password`
//! the wait for a turn and the hash, `db` the transactions and the outbox
//! insert, `redis` each round trip, `mail::courier` each delivery attempt).
//! Only those spans are exported, with the attributes they are given on
//! purpose: no log event becomes a span event, so nothing a log line holds
//! (an error's text, the development transport's email) reaches a
//! collector, and no span names an address, a client, a password, a code
//! or a key (`tests/integration/traces.rs` searches every exported byte).
//!
//! The context travels in W3C Trace Context form ([`context`]): in from a
//! trusted proxy's `traceparent`, out on the email API's and the webhook's
//! requests, and through the outbox row, so that an email's delivery,
//! maybe minutes later in another process, belongs to the registration's
//! trace.
//!
//! A collector that is slow or down never holds up a request: spans wait in
//! a bounded queue for the exporter's own thread, and what does not fit, or
//! what the collector does not take, is dropped and counted
//! (`activator_trace_spans_dropped_total`). Off (no endpoint), none of it
//! exists: no exporter, no layer, no request span; the spans the code names
//! are disabled where they are made, as nobody listens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::{RootSampler, Sampler, TraceSettings};

pub mod context;
mod export;
pub mod spans;

/// How long shutting down waits for the last spans to leave.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The field of the spans the log shows (a request's, a delivery's): the
/// only spans the log prints, and the ones traces leave out.
pub const TRACE_ID: &str = "trace_id";

/// Whether traces are on in this process: the spans that cost something
/// to make even when nobody listens (the request's, a delivery's, which
/// the log shows) are made only then.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The running export: the tracer provider and its batch thread.
pub struct Traces {
    provider: SdkTracerProvider,
    /// The collector to ask once whether it takes an export, until asked.
    probe: Option<(export::Client, String)>,
}

impl Traces {
    /// Starts exporting to `settings.endpoint`. Its answer is not waited
    /// for: a collector that cannot be reached is said once in the log
    /// (`export::probe`), and the service serves anyway.
    pub fn start(settings: &TraceSettings) -> anyhow::Result<Self> {
        let client = export::Client::new();
        // The endpoint and protocol are set here (from the settings, as
        // read once); the exporter itself still reads the variables it
        // alone knows: OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client.clone())
            .with_endpoint(settings.endpoint.clone())
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        let queue = export::Queue::new(settings.queue);
        let batch = BatchSpanProcessor::builder(export::Counted::new(exporter, queue.clone()))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(settings.queue)
                    .with_scheduled_delay(settings.delay)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(export::Admitted::new(batch, queue))
            .with_sampler(sampler(settings.sampler))
            .with_resource(resource(settings))
            .build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Self {
            provider,
            probe: Some((client, settings.endpoint.clone())),
        })
    }

    /// Says once, in the background, whether the collector takes an
    /// export: called once the log's subscriber is installed, so that an
    /// unreachable collector's line is not lost before it.
    pub fn probe(&mut self) {
        if let Some((client, endpoint)) = self.probe.take() {
            export::probe(client, endpoint);
        }
    }

    /// The layer that turns this crate's spans into OpenTelemetry's. Log
    /// events are not its business (see the module's documentation), nor
    /// are other crates' spans.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("activator"))
            // The attributes a span is given, nothing more: no source
            // location, thread, target, or busy and idle times.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Parents are tracing's; OpenTelemetry's own current context
            // is not used, so entering a span need not set it.
            .with_context_activation(false)
            // This crate's spans but those the log shows, which carry only
            // the trace id of the span they sit in.
            .with_filter(
                filter_fn(|meta| {
                    meta.is_span()
                        && meta.target().starts_with("activator")
                        && meta.fields().field(TRACE_ID).is_none()
                })
                .with_max_level_hint(LevelFilter::INFO),
            )
    }

    /// Exports what is queued, waiting at most a moment: a collector that
    /// is down does not hold up the process's exit.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown_with_timeout(SHUTDOWN_WAIT) {
            tracing::warn!(error = %err, "the last spans may not have been exported");
        }
    }
}

/// Sets attribute `key` of `span`'s OpenTelemetry span, for a value known
/// only once the span runs (a tracing field must be declared when the span
/// is made).
pub fn set_attribute(span: &Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if !span.is_disabled() {
        span.set_attribute(key, value);
    }
}

/// Renames `span`'s OpenTelemetry span (a request's, once routed).
pub fn set_name(span: &Span, name: String) {
    if !span.is_disabled() {
        span.context().span().update_name(name);
    }
}

/// Marks `span` failed, saying why.
pub fn set_error(span: &Span, description: String) {
    if !span.is_disabled() {
        span.set_status(opentelemetry::trace::Status::error(description));
    }
}

fn sampler(sampler: Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as Sdk;
    let root = |root: RootSampler| match root {
        RootSampler::AlwaysOn => Sdk::AlwaysOn,
        RootSampler::AlwaysOff => Sdk::AlwaysOff,
        RootSampler::Ratio(ratio) => Sdk::TraceIdRatioBased(ratio),
    };
    match sampler {
        Sampler::AlwaysOn => Sdk::AlwaysOn,
        Sampler::AlwaysOff => Sdk::AlwaysOff,
        Sampler::Ratio(ratio) => Sdk::TraceIdRatioBased(ratio),
        Sampler::ParentBased(first) => Sdk::ParentBased(Box::new(root(first))),
    }
}

/// What the spans say of the service: built from the settings alone, not
/// by the SDK's detectors, which would let `OTEL_RESOURCE_ATTRIBUTES`'
/// `service.name` beat `OTEL_SERVICE_NAME` (the specification says the
/// opposite) and call the service `unknown_service` when neither is set.
fn resource(settings: &TraceSettings) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            settings
                .resource
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_attributes([
            KeyValue::new("service.name", settings.service_name.clone()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
        ])
        .build()
}
