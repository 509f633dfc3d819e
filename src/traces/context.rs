//! A trace's context in W3C Trace Context form (`traceparent`, and
//! `tracestate` when there is one): read from a request's headers or an
//! outbox row, written onto an outgoing request or into an outbox row.
//!
//! A `traceparent` that does not parse is no context at all: the span it
//! was meant for starts a trace of its own, and nothing else changes (no
//! error, no log line: any client can send one).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The longest `tracestate` kept: the specification's 32 entries of at most
/// 256 characters each would be 8 KiB; no vendor needs that much, and an
/// outbox row should not carry what a client chose to send.
const MAX_TRACESTATE: usize = 512;

/// A trace context, as its two headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl Carrier {
    /// The context of `span`: a child of it continues its trace. `None`
    /// when traces are off (or the span is disabled).
    pub fn of(span: &tracing::Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let mut carrier = Headers::default();
        TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
        Some(Self {
            traceparent: carrier.traceparent?,
            tracestate: carrier
                .tracestate
                .filter(|state| !state.is_empty() && state.len() <= MAX_TRACESTATE),
        })
    }
}

/// Makes `span` continue the trace of `traceparent` (and `tracestate`): a
/// child of that context, sampled as it was if the sampler is parent-based.
/// A missing or malformed `traceparent` leaves `span` the start of a trace
/// of its own. Call it before anything enters `span` or makes a child of
/// it: the parent is fixed then.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let headers = Headers {
        traceparent: Some(traceparent.to_owned()),
        tracestate: tracestate
            .filter(|state| state.len() <= MAX_TRACESTATE)
            .map(str::to_owned),
    };
    let parent = TraceContextPropagator::new().extract(&headers);
    if parent.span().span_context().is_valid() {
        // Fails only for a span already started or disabled: it stays the
        // start of its own trace, as documented.
        let _ = span.set_parent(parent);
    }
}

/// The trace id of `span`, 32 lowercase hexadecimal digits, as logs carry
/// it; `None` when traces are off.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The two headers, for the propagator.
#[derive(Default)]
struct Headers {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl Extractor for Headers {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the propagator reads from `traceparent`, if anything.
    fn read(traceparent: &str) -> Option<String> {
        let headers = Headers {
            traceparent: Some(traceparent.to_owned()),
            tracestate: None,
        };
        let context = TraceContextPropagator::new().extract(&headers);
        let span = context.span().span_context().clone();
        span.is_valid().then(|| span.trace_id().to_string())
    }

    #[test]
    fn a_well_formed_traceparent_is_read_and_a_malformed_one_is_none() {
        assert_eq!(
            read("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        for malformed in [
            "",
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(read(malformed), None, "{malformed:?}");
        }
    }

    #[test]
    fn without_traces_a_span_has_no_context() {
        let span = tracing::Span::none();
        assert_eq!(Carrier::of(&span), None);
        assert_eq!(trace_id(&span), None);
        continue_trace(&span, Some("garbage"), None);
    }
}
