//! The variables activator reads: the one place their defaults are
//! written.

/// One environment variable: its name, its default and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub default: DefaultValue,
    pub meaning: &'static str,
}

/// What a variable is when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Start-up stops, naming it.
    Required,
    /// Off, or the feature it configures unused.
    Unset,
    /// This value.
    Value(&'static str),
}

/// Every variable activator reads (Rocket's `ROCKET_*` aside), in the order
/// `.env.example` lists them.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "DATABASE_URL",
        default: DefaultValue::Required,
        meaning: "PostgreSQL URL",
    },
    Variable {
        name: "DATABASE_POOL_SIZE",
        default: DefaultValue::Value("16"),
        meaning: "connections in the pool",
    },
    Variable {
        name: "REDIS_URL",
        default: DefaultValue::Required,
        meaning: "Redis URL; a comma-separated list of node URLs means a Redis Cluster; `redis+sentinel://host:port,host:port/<primary name>` asks Sentinels for the primary",
    },
    Variable {
        name: "SECRET_KEY",
        default: DefaultValue::Required,
        meaning: "key for the codes' HMAC and the outbox's seal, at least 32 bytes (not the placeholder of `.env.example`)",
    },
    Variable {
        name: "SECRET_KEY_FALLBACKS",
        default: DefaultValue::Unset,
        meaning: "older keys, comma-separated, that still verify codes and open queued emails while a rotation completes; each as long as `SECRET_KEY` must be",
    },
    Variable {
        name: "SYSTEM_EMAIL",
        default: DefaultValue::Value("no-reply@example.com"),
        meaning: "the `from` of every email",
    },
    Variable {
        name: "EMAIL_API_URL",
        default: DefaultValue::Unset,
        meaning: "where emails are POSTed (the HTTP email API); at most one of it and `SMTP_URL`",
    },
    Variable {
        name: "SMTP_URL",
        default: DefaultValue::Unset,
        meaning: "SMTP server in lettre's URL form (`smtps://user:pass@host:465`, `smtp://user:pass@host:587?tls=required`, `smtp://host:25`); with neither, emails go to the log (development only)",
    },
    Variable {
        name: "EMAIL_MAX_ATTEMPTS",
        default: DefaultValue::Value("5"),
        meaning: "attempts at one email before it is marked dead",
    },
    Variable {
        name: "EMAIL_CONCURRENCY",
        default: DefaultValue::Value("16"),
        meaning: "sends in flight per instance",
    },
    Variable {
        name: "WEBHOOK_URL",
        default: DefaultValue::Unset,
        meaning: "where events are POSTed, signed per the Standard Webhooks specification; unset: no events",
    },
    Variable {
        name: "WEBHOOK_SECRET",
        default: DefaultValue::Unset,
        meaning: "the signing secret, `whsec_` and base64, as the receiver's library takes it; several separated by spaces sign each event (rotation); required with `WEBHOOK_URL`",
    },
    Variable {
        name: "WEBHOOK_EVENTS",
        default: DefaultValue::Value("user.activated"),
        meaning: "the events sent, comma-separated: `user.activated`, `user.registered`",
    },
    Variable {
        name: "TEMPLATES_DIR",
        default: DefaultValue::Unset,
        meaning: "directory of `<locale>/` folders overriding or adding email templates",
    },
    Variable {
        name: "DEFAULT_LOCALE",
        default: DefaultValue::Value("en"),
        meaning: "language of emails when `Accept-Language` names none we have",
    },
    Variable {
        name: "ACTIVATION_CODE_TTL_SECONDS",
        default: DefaultValue::Value("60"),
        meaning: "how long a code is valid",
    },
    Variable {
        name: "CODE_LENGTH",
        default: DefaultValue::Value("4"),
        meaning: "digits in a code, 4–8",
    },
    Variable {
        name: "PENDING_ACCOUNT_TTL_SECONDS",
        default: DefaultValue::Value("86400"),
        meaning: "how long a registration stays pending before the address may be registered afresh; 0 = for ever",
    },
    Variable {
        name: "BCRYPT_COST",
        default: DefaultValue::Value("12"),
        meaning: "bcrypt cost, 4–31",
    },
    Variable {
        name: "CREDENTIAL_PROOF",
        default: DefaultValue::Value("on"),
        meaning: "`on`: keep an HMAC proof of a registration's credentials in Redis for the code's lifetime, so its activation costs no second bcrypt; `off`: every sign-in runs bcrypt",
    },
    Variable {
        name: "PASSWORD_POLICY",
        default: DefaultValue::Value("original"),
        meaning: "the password rules' preset: `original` (8–72 characters, no whitespace, four character classes) or `nist` (NIST SP 800-63B: at least 15 characters, any printable character and spaces, no composition rules, NFKC); each rule below overrides it alone",
    },
    Variable {
        name: "PASSWORD_MIN_LENGTH",
        default: DefaultValue::Unset,
        meaning: "fewest characters, 1–72; unset: the preset's (8, `nist` 15)",
    },
    Variable {
        name: "PASSWORD_MAX_LENGTH",
        default: DefaultValue::Unset,
        meaning: "most characters, up to 72; unset: 72. Never more than 72 bytes either: bcrypt reads no more, and a longer password is refused, never truncated",
    },
    Variable {
        name: "PASSWORD_CHARACTER_CLASSES",
        default: DefaultValue::Unset,
        meaning: "`on`: a lowercase and an uppercase letter, a digit and a special character required; unset: the preset's (`original` on, `nist` off)",
    },
    Variable {
        name: "PASSWORD_SPACES",
        default: DefaultValue::Unset,
        meaning: "`on`: spaces allowed anywhere; `off`: no whitespace; unset: the preset's (`original` off, `nist` on)",
    },
    Variable {
        name: "PASSWORD_NORMALIZATION",
        default: DefaultValue::Unset,
        meaning: "`none`, `nfc` or `nfkc`: the Unicode form a password is checked and hashed in, at registration and sign-in; unset: the preset's (`original` none, `nist` nfkc)",
    },
    Variable {
        name: "PASSWORD_MIN_STRENGTH",
        default: DefaultValue::Value("0"),
        meaning: "the lowest zxcvbn score (0–4) a new password needs, the address's local part and domain counted as guessable words; 0: no estimate",
    },
    Variable {
        name: "PASSWORD_DENYLIST_FILE",
        default: DefaultValue::Unset,
        meaning: "a deny-list filter file made by `activator passwords import`, mapped read-only at start; a new password found in it is refused. A missing or damaged file stops start-up",
    },
    Variable {
        name: "REGISTRATION_DISCLOSURE",
        default: DefaultValue::Value("original"),
        meaning: "`original`: registration answers 409 for a pending or active address, as the original; `hidden`: 201 for every address in the same time, and an active account's owner is emailed instead",
    },
    Variable {
        name: "ACTIVATION_ATTEMPT_LIMIT",
        default: DefaultValue::Value("5"),
        meaning: "failed activations before lockout",
    },
    Variable {
        name: "ACTIVATION_ATTEMPT_WINDOW_SECONDS",
        default: DefaultValue::Value("300"),
        meaning: "window in which those failures count",
    },
    Variable {
        name: "ACTIVATION_LOCK_SECONDS",
        default: DefaultValue::Value("900"),
        meaning: "how long a lockout lasts",
    },
    Variable {
        name: "RESEND_PER_MINUTE_LIMIT",
        default: DefaultValue::Value("1"),
        meaning: "resends per minute",
    },
    Variable {
        name: "RESEND_DAILY_LIMIT",
        default: DefaultValue::Value("5"),
        meaning: "resends per day",
    },
    Variable {
        name: "ACTIVATION_MAX_FAILURES",
        default: DefaultValue::Value("10"),
        meaning: "failed activations a pending account may have in its whole life",
    },
    Variable {
        name: "INBOX_SHORT_CODE_GUESSES_DAILY",
        default: DefaultValue::Value("4"),
        meaning: "the odds of codes compared for one inbox in a day, in four-digit guesses; past it (or the yearly budget) codes are not compared and new ones are 8 digits long",
    },
    Variable {
        name: "INBOX_SHORT_CODE_GUESSES_YEARLY",
        default: DefaultValue::Value("35"),
        meaning: "the same in 365 days",
    },
    Variable {
        name: "AUTH_FAILURE_LIMIT",
        default: DefaultValue::Value("10"),
        meaning: "failed Basic authentications per (email, client network) within the window",
    },
    Variable {
        name: "AUTH_FAILURE_CEILING",
        default: DefaultValue::Value("100"),
        meaning: "failed Basic authentications per email within the window, all networks together; past it only networks that have not failed for the email are heard",
    },
    Variable {
        name: "AUTH_FAILURE_PER_IP_LIMIT",
        default: DefaultValue::Value("30"),
        meaning: "failed Basic authentications per client IP within the window",
    },
    Variable {
        name: "SIGN_IN_LIMIT",
        default: DefaultValue::Value("30"),
        meaning: "successful Basic authentications per email within the window",
    },
    Variable {
        name: "SIGN_IN_PER_IP_LIMIT",
        default: DefaultValue::Value("120"),
        meaning: "successful Basic authentications per client IP within the window",
    },
    Variable {
        name: "AUTH_FAILURE_WINDOW_SECONDS",
        default: DefaultValue::Value("900"),
        meaning: "the window of the failed and successful sign-in limits",
    },
    Variable {
        name: "ACTIVATION_FAILURE_PER_IP_LIMIT",
        default: DefaultValue::Value("30"),
        meaning: "failed activations (wrong codes) per client IP within the window",
    },
    Variable {
        name: "ACTIVATION_FAILURE_PER_IP_WINDOW_SECONDS",
        default: DefaultValue::Value("3600"),
        meaning: "that window",
    },
    Variable {
        name: "REGISTER_PER_IP_LIMIT",
        default: DefaultValue::Value("30"),
        meaning: "registrations per client IP within the window",
    },
    Variable {
        name: "REGISTER_PER_IP_WINDOW_SECONDS",
        default: DefaultValue::Value("600"),
        meaning: "that window",
    },
    Variable {
        name: "HASH_QUEUE_PER_IP",
        default: DefaultValue::Value("4"),
        meaning: "places one client (an IPv4 address, an IPv6 /48) may hold in the password-hash queue",
    },
    Variable {
        name: "EMAIL_PER_MAILBOX_DAILY_LIMIT",
        default: DefaultValue::Value("10"),
        meaning: "activation emails a day to one mailbox (the address without its `+tag`) asked for from one client network",
    },
    Variable {
        name: "EMAIL_PER_MAILBOX_DAILY_TOTAL",
        default: DefaultValue::Value("30"),
        meaning: "activation emails a day to one mailbox, all client networks together",
    },
    Variable {
        name: "MAILBOX_ALIAS_DOMAINS",
        default: DefaultValue::Value("googlemail.com=gmail.com"),
        meaning: "`alias=domain` pairs, comma-separated: domains that deliver to the same inboxes as another, folded into one mailbox for the email limit; empty for none",
    },
    Variable {
        name: "MAILBOX_DOTLESS_DOMAINS",
        default: DefaultValue::Value("gmail.com"),
        meaning: "domains whose inboxes ignore dots in the local part (`a.da@` is `ada@`), for the email limit; empty for none",
    },
    Variable {
        name: "TRUSTED_PROXIES",
        // As uvicorn's --forwarded-allow-ips: a reverse proxy on the same
        // host is believed without being named.
        default: DefaultValue::Value("127.0.0.1/32,::1"),
        meaning: "CIDRs whose `X-Forwarded-For` is believed; empty for none",
    },
    Variable {
        name: "RATE_LIMIT_EXEMPT",
        default: DefaultValue::Value(""),
        meaning: "CIDRs the per-IP limits skip; none by default",
    },
    Variable {
        name: "METRICS_ADDRESS",
        default: DefaultValue::Value("127.0.0.1:9464"),
        meaning: "where `GET /metrics` listens (`host:port`); empty disables it",
    },
    Variable {
        name: "LOG_FORMAT",
        default: DefaultValue::Value("text"),
        meaning: "`text` or `json`",
    },
    Variable {
        name: "OTEL_EXPORTER_OTLP_ENDPOINT",
        default: DefaultValue::Unset,
        meaning: "an OpenTelemetry collector's OTLP/HTTP address (`http://collector:4318`), spans posted to its `/v1/traces`; with neither endpoint set, no traces",
    },
    Variable {
        name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        default: DefaultValue::Unset,
        meaning: "the whole URL spans are posted to, instead (`http://collector:4318/v1/traces`)",
    },
    Variable {
        name: "OTEL_SERVICE_NAME",
        default: DefaultValue::Value("activator"),
        meaning: "the traces' `service.name`",
    },
    Variable {
        name: "OTEL_RESOURCE_ATTRIBUTES",
        default: DefaultValue::Unset,
        meaning: "more attributes of the service, `key=value` pairs comma-separated (`deployment.environment.name=prod`)",
    },
    Variable {
        name: "OTEL_TRACES_SAMPLER",
        default: DefaultValue::Value("parentbased_always_on"),
        meaning: "which traces are kept: `always_on`, `always_off`, `traceidratio`, or `parentbased_` and one of those (a continued trace as its caller decided)",
    },
    Variable {
        name: "OTEL_TRACES_SAMPLER_ARG",
        default: DefaultValue::Value("1.0"),
        meaning: "the share of traces a `traceidratio` sampler keeps, 0 to 1",
    },
    Variable {
        name: "OTEL_BSP_MAX_QUEUE_SIZE",
        default: DefaultValue::Value("2048"),
        meaning: "spans waiting for export at most; past it, spans are dropped and counted, never waited for",
    },
    Variable {
        name: "OTEL_BSP_SCHEDULE_DELAY",
        default: DefaultValue::Value("5000"),
        meaning: "milliseconds between two exports of the spans waiting",
    },
    Variable {
        name: "OTEL_SDK_DISABLED",
        default: DefaultValue::Value("false"),
        meaning: "`true`: no traces, whatever the endpoint",
    },
];
