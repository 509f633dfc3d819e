//! Delivering one email: POST to the email API (the contract of the service
//! this one replaces), or, in development without `EMAIL_API_URL`, the log.

use std::time::Duration;

use serde::Serialize;

/// How long connecting to the email API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one whole post may take, response included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON body of the email API contract.
#[derive(Serialize)]
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    /// The text body.
    pub body: &'a str,
    pub html: &'a str,
}

/// Why a message was not delivered; kept as the outbox row's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("email API answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("email API unreachable: {0}")]
    Http(#[from] ureq::Error),
    #[error("the message has no body left to send")]
    Missing,
}

/// Where messages go.
pub enum Transport {
    Http {
        url: String,
        agent: ureq::Agent,
    },
    /// Development only: the message, code included, is written to the log.
    Log,
}

impl Transport {
    /// Posts to `url` with connect and overall timeouts; `None` logs instead.
    pub fn new(url: Option<&str>) -> Self {
        match url {
            Some(url) => {
                let agent = ureq::Agent::config_builder()
                    .timeout_connect(Some(CONNECT_TIMEOUT))
                    .timeout_global(Some(SEND_TIMEOUT))
                    .http_status_as_error(false)
                    .build()
                    .into();
                Self::Http {
                    url: url.to_owned(),
                    agent,
                }
            }
            None => Self::Log,
        }
    }

    /// Delivers one message; any 2xx answer counts as delivered. Blocking.
    pub fn send(&self, envelope: &Envelope<'_>) -> Result<(), SendError> {
        match self {
            Self::Http { url, agent } => {
                let mut response = agent.post(url).send_json(envelope)?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                // A little of the answer helps whoever reads `last_error`.
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(512)
                    .read_to_string()
                    .unwrap_or_default();
                Err(SendError::Status {
                    status: status.as_u16(),
                    body: body.chars().take(200).collect(),
                })
            }
            Self::Log => {
                tracing::warn!(
                    to = envelope.to,
                    subject = envelope.subject,
                    body = envelope.body,
                    "email not sent (EMAIL_API_URL is unset); its text follows"
                );
                Ok(())
            }
        }
    }
}
