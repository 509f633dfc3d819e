//! Events for the rest of the system, posted to `WEBHOOK_URL` and signed
//! per the Standard Webhooks specification: `webhook-id` (the same on every
//! retry), `webhook-timestamp` (seconds, per attempt) and
//! `webhook-signature`, `v1,` and the base64 HMAC-SHA256 of
//! `id.timestamp.body` under each secret of `WEBHOOK_SECRET`, separated by
//! spaces (a receiver holding any one of them verifies).
//!
//! Answers: 2xx delivered; 429, 408, 5xx, timeouts and lost connections
//! retried with the outbox's backoff (a 429 here pauses no email); any other
//! 4xx dead, the answer's start kept.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::mail::transport::{Failure, classify_response, http_agent, with_trace};
use crate::settings::WebhookSettings;
use crate::traces::context::Carrier;

/// Posts signed events. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    url: Arc<str>,
    secrets: Arc<[Vec<u8>]>,
    agent: ureq::Agent,
}

impl Webhook {
    /// The webhook of `settings`, keeping up to `connections` idle
    /// connections alive (the dispatcher's window).
    pub fn new(settings: &WebhookSettings, connections: usize) -> Self {
        Self {
            url: settings.url.as_str().into(),
            secrets: settings.secrets.clone().into(),
            agent: http_agent(connections),
        }
    }

    /// The `webhook-id` of outbox message `id`: the same on every attempt.
    pub fn event_id(id: i64) -> String {
        format!("evt_{id}")
    }

    /// `webhook-signature` of `body` sent as `id` at `timestamp`.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        self.secrets
            .iter()
            .map(|secret| {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                    .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
                mac.update(format!("{id}.{timestamp}.").as_bytes());
                mac.update(body);
                let signature = mac.finalize().into_bytes();
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(signature)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Posts the event `body` of outbox message `id`, on the blocking pool,
    /// carrying the delivery's trace context `trace`; `Ok` holds the
    /// receiver's status.
    pub async fn send(
        &self,
        id: i64,
        body: Vec<u8>,
        trace: Option<&Carrier>,
    ) -> Result<u16, Failure> {
        let event_id = Self::event_id(id);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let signature = self.signature(&event_id, timestamp, &body);
        let (url, agent) = (self.url.clone(), self.agent.clone());
        let trace = trace.cloned();
        let posted = tokio::task::spawn_blocking(move || {
            let request = agent
                .post(&*url)
                .header("Content-Type", "application/json")
                .header("webhook-id", &event_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
            let response = with_trace(request, trace.as_ref()).send(&body[..]);
            classify_response(response)
        })
        .await
        .unwrap_or_else(|err| {
            Err(Failure::Transient {
                status: None,
                reason: format!("the send failed: {err}"),
            })
        });
        // A receiver's 429 asks this event to wait, not every email.
        posted.map_err(|failure| match failure {
            Failure::Throttled { .. } => Failure::Transient {
                status: Some(429),
                reason: "the receiver asks to slow down".into(),
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries (their test vector).
    #[test]
    fn signatures_follow_the_standard_webhooks_test_vector() {
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let webhook = Webhook::new(
            &WebhookSettings {
                url: "http://127.0.0.1:9/".into(),
                secrets: vec![secret.clone(), secret],
                activated: true,
                registered: false,
            },
            1,
        );
        let signature = webhook.signature(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let one = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(signature, format!("{one} {one}"));
    }
}
