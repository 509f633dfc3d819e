//! The traces' settings: OpenTelemetry's own variables, read as its
//! specification reads them ("Environment Variable Specification"), so a
//! deployment configured for other services configures this one too.
//! Traces are off unless an endpoint is set.

use std::fmt;
use std::time::Duration;

use super::{SettingsError, Source, integer, optional, redact_url, url, value};

/// Where spans go and what they say of this service; `None` from
/// [`TraceSettings::from_source`] means no traces at all.
#[derive(Clone, PartialEq)]
pub struct TraceSettings {
    /// The URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as
    /// it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces`.
    pub endpoint: String,
    /// `service.name` (`OTEL_SERVICE_NAME`, else one given in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `activator`).
    pub service_name: String,
    /// The other resource attributes of `OTEL_RESOURCE_ATTRIBUTES`,
    /// percent-decoded, in their order.
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    /// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub queue: usize,
    /// The pause between two exports (`OTEL_BSP_SCHEDULE_DELAY`).
    pub delay: Duration,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// This share of the trace ids, 0 to 1.
    Ratio(f64),
    /// As the caller's context says when there is one (a `traceparent`
    /// continued, an email's stored context), else as the root sampler.
    ParentBased(RootSampler),
}

/// A parent-based sampler's choice for traces that start here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl fmt::Debug for TraceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceSettings")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("service_name", &self.service_name)
            .field("resource", &self.resource.len())
            .field("sampler", &self.sampler)
            .field("queue", &self.queue)
            .field("delay", &self.delay)
            .finish()
    }
}

impl TraceSettings {
    /// The traces' settings; `None` when `OTEL_SDK_DISABLED=true` or no
    /// endpoint is set (OpenTelemetry's own default, `localhost:4318`, is
    /// not assumed: a service that nobody asked to trace sends nothing).
    pub fn from_source(source: &impl Source) -> Result<Option<Self>, SettingsError> {
        let disabled = value(source, "OTEL_SDK_DISABLED").unwrap_or_default();
        let disabled = match disabled.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" | "" => false,
            _ => {
                return Err(SettingsError::Invalid {
                    name: "OTEL_SDK_DISABLED",
                    problem: format!("expected true or false, got {disabled:?}"),
                });
            }
        };
        // Each is checked even when disabled: a typo should not wait for
        // the day traces are turned on.
        let endpoint = match optional(source, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(endpoint) => Some(http_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)?),
            None => optional(source, "OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| {
                    let base = http_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
                    Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
                })
                .transpose()?,
        };
        let (service_name, resource) = resource(source)?;
        let sampler = sampler(source)?;
        let queue = integer(source, "OTEL_BSP_MAX_QUEUE_SIZE", 1..=1_000_000)?;
        let delay = integer(source, "OTEL_BSP_SCHEDULE_DELAY", 1..=3_600_000u64)?;
        Ok(endpoint.filter(|_| !disabled).map(|endpoint| Self {
            endpoint,
            service_name,
            resource,
            sampler,
            queue,
            delay: Duration::from_millis(delay),
        }))
    }
}

/// An `http://` or `https://` URL, not echoed when it is not one.
fn http_url(name: &'static str, raw: String) -> Result<String, SettingsError> {
    let checked = url(name, raw)?;
    if checked.starts_with("http://") || checked.starts_with("https://") {
        Ok(checked)
    } else {
        Err(SettingsError::Invalid {
            name,
            problem: "expected an http:// or https:// URL (OTLP over HTTP)".into(),
        })
    }
}

/// `service.name` and the other attributes, `OTEL_SERVICE_NAME` winning
/// over a `service.name` in `OTEL_RESOURCE_ATTRIBUTES` (the
/// specification's order).
fn resource(source: &impl Source) -> Result<(String, Vec<(String, String)>), SettingsError> {
    let invalid = |problem: String| SettingsError::Invalid {
        name: "OTEL_RESOURCE_ATTRIBUTES",
        problem,
    };
    let mut attributes = Vec::new();
    for pair in optional(source, "OTEL_RESOURCE_ATTRIBUTES")
        .unwrap_or_default()
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
    {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("expected key=value pairs, got {pair:?}")))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid(format!("a pair has no key: {pair:?}")));
        }
        let value = percent_decoded(raw.trim())
            .ok_or_else(|| invalid(format!("the value of {key} is not percent-encoded UTF-8")))?;
        attributes.push((key.to_owned(), value));
    }
    let given = attributes
        .iter()
        .rposition(|(key, _)| key == "service.name")
        .map(|at| attributes.remove(at).1);
    attributes.retain(|(key, _)| key != "service.name");
    let service_name = optional(source, "OTEL_SERVICE_NAME")
        .or(given)
        .or_else(|| value(source, "OTEL_SERVICE_NAME"))
        .unwrap_or_default();
    Ok((service_name, attributes))
}

/// `%XX` sequences decoded (W3C Baggage's encoding of values).
fn percent_decoded(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn sampler(source: &impl Source) -> Result<Sampler, SettingsError> {
    let name = value(source, "OTEL_TRACES_SAMPLER").unwrap_or_default();
    let ratio = || {
        let raw = value(source, "OTEL_TRACES_SAMPLER_ARG").unwrap_or_default();
        raw.parse::<f64>()
            .ok()
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .ok_or_else(|| SettingsError::Invalid {
                name: "OTEL_TRACES_SAMPLER_ARG",
                problem: format!("expected a sampling ratio from 0 to 1, got {raw:?}"),
            })
    };
    Ok(match name.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::Ratio(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(RootSampler::AlwaysOn),
        "parentbased_always_off" => Sampler::ParentBased(RootSampler::AlwaysOff),
        "parentbased_traceidratio" => Sampler::ParentBased(RootSampler::Ratio(ratio()?)),
        other => {
            return Err(SettingsError::Invalid {
                name: "OTEL_TRACES_SAMPLER",
                problem: format!(
                    "expected always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got {other:?}"
                ),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn traces(
        pairs: &[(&'static str, &'static str)],
    ) -> Result<Option<TraceSettings>, SettingsError> {
        TraceSettings::from_source(&pairs.iter().copied().collect::<HashMap<_, _>>())
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set_or_when_disabled() {
        assert_eq!(traces(&[]).unwrap(), None);
        assert_eq!(
            traces(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_TRACES_SAMPLER", "always_on")
            ])
            .unwrap(),
            None
        );
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        assert!(traces(&on).unwrap().is_some());
        for disabled in ["true", "TRUE", "True"] {
            let mut set = on.to_vec();
            set.push(("OTEL_SDK_DISABLED", disabled));
            assert_eq!(traces(&set).unwrap(), None, "{disabled}");
        }
        let mut set = on.to_vec();
        set.push(("OTEL_SDK_DISABLED", "false"));
        assert!(traces(&set).unwrap().is_some());
        set.push(("OTEL_SDK_DISABLED", "yes"));
        let err = traces(&set).unwrap_err().to_string();
        assert!(err.contains("OTEL_SDK_DISABLED"), "{err}");
    }

    #[test]
    fn the_signal_endpoint_is_used_as_it_is_and_the_base_gets_the_traces_path() {
        let set = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(set.endpoint, "http://collector:4318/v1/traces");
        let set = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/ingest",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(set.endpoint, "https://traces.example/ingest");
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "grpc://collector:4317",
            ),
        ] {
            let err = traces(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn the_service_name_wins_over_the_resource_attributes_and_defaults_to_activator() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let set = traces(&[on]).unwrap().unwrap();
        assert_eq!(set.service_name, "activator");
        assert!(set.resource.is_empty());
        let set = traces(&[
            on,
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attributes, deployment.environment.name=prod,team=a%2Cb%20c",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(set.service_name, "from-attributes");
        assert_eq!(
            set.resource,
            vec![
                ("deployment.environment.name".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b c".to_owned()),
            ]
        );
        let set = traces(&[
            on,
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
            ("OTEL_SERVICE_NAME", "from-name"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(set.service_name, "from-name");
        for bad in ["novalue", "=x", "k=%zz"] {
            let err = traces(&[on, ("OTEL_RESOURCE_ATTRIBUTES", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("OTEL_RESOURCE_ATTRIBUTES"), "{err}");
        }
    }

    #[test]
    fn the_samplers_of_the_specification_are_read_with_their_ratio() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let sampler = |pairs: &[(&'static str, &'static str)]| {
            let mut set = vec![on];
            set.extend_from_slice(pairs);
            traces(&set).map(|set| set.unwrap().sampler)
        };
        assert_eq!(
            sampler(&[]).unwrap(),
            Sampler::ParentBased(RootSampler::AlwaysOn)
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap(),
            Sampler::AlwaysOff
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]).unwrap(),
            Sampler::Ratio(1.0)
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ])
            .unwrap(),
            Sampler::ParentBased(RootSampler::Ratio(0.25))
        );
        for (name, value) in [
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ] {
            let err = sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio"), (name, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
