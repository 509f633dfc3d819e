use super::*;
use std::collections::HashMap;

/// Asserts that `source` with `name` set to each of `values` is refused
/// naming `name`, without echoing `hidden`.
fn refused(
    source: &HashMap<&'static str, &'static str>,
    name: &'static str,
    values: &[&'static str],
    hidden: &str,
) {
    for value in values {
        let mut source = source.clone();
        source.insert(name, value);
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(err.contains(name) && !err.contains(hidden), "{err}");
    }
}

fn base() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("DATABASE_URL", "postgres://app:hunter2@localhost/activator"),
        ("REDIS_URL", "redis://localhost:6379/"),
        ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
    ])
}

#[test]
fn defaults_follow_the_spec() {
    let settings = Settings::from_source(&base()).unwrap();
    assert_eq!(settings.code_ttl, Duration::from_secs(60));
    assert_eq!(settings.bcrypt_cost, 12);
    // Every limit's default, written out (SPEC.md, docs/LIMITS.md): not
    // compared with `LimitSettings::default()`, which is this same code.
    let minutes = |n: u64| Duration::from_secs(n * 60);
    assert_eq!(
        settings.limits,
        LimitSettings {
            attempt_limit: 5,
            attempt_window: minutes(5),
            lock: minutes(15),
            resend_per_minute: 1,
            resend_daily: 5,
            activation_max_failures: 10,
            activation_failures_per_ip: 30,
            activation_failure_window: minutes(60),
            inbox_short_guesses_daily: 4,
            inbox_short_guesses_yearly: 35,
            auth_failures_per_email: 10,
            auth_failure_ceiling: 100,
            auth_failures_per_ip: 30,
            sign_ins_per_email: 30,
            sign_ins_per_ip: 120,
            auth_failure_window: minutes(15),
            register_per_ip: 30,
            register_window: minutes(10),
            hash_queue_per_ip: 4,
            emails_per_mailbox_daily: 10,
            emails_per_mailbox_daily_total: 30,
        }
    );
    assert_eq!(settings.email_max_attempts, 5);
    assert_eq!(settings.email_concurrency, 16);
    assert_eq!(settings.email_api_url, None);
    assert_eq!(settings.system_email, "no-reply@example.com");
}

#[test]
fn network_lists_take_cidrs_and_addresses_and_empty_means_none() {
    let settings = Settings::from_source(&base()).unwrap();
    assert_eq!(settings.network, NetworkSettings::default());
    // As uvicorn: loopback's X-Forwarded-For believed, nobody exempt.
    let loopback: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
    assert_eq!(settings.network.trusted_proxies, loopback);
    assert!(settings.network.rate_limit_exempt.is_empty());
    let mut source = base();
    source.insert("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,fd00::/8");
    source.insert("RATE_LIMIT_EXEMPT", "");
    let settings = Settings::from_source(&source).unwrap();
    assert_eq!(settings.network.trusted_proxies.len(), 3);
    assert!(settings.network.rate_limit_exempt.is_empty());
    source.insert("TRUSTED_PROXIES", "10.0.0.0/33");
    let err = Settings::from_source(&source).unwrap_err();
    assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
}

#[test]
fn metrics_listen_on_loopback_unless_moved_or_emptied() {
    let mut source = base();
    let settings = Settings::from_source(&source).unwrap();
    assert_eq!(
        settings.metrics_address,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    source.insert("METRICS_ADDRESS", "[::1]:9500");
    let settings = Settings::from_source(&source).unwrap();
    assert_eq!(
        settings.metrics_address,
        Some("[::1]:9500".parse().unwrap())
    );
    source.insert("METRICS_ADDRESS", "");
    assert_eq!(
        Settings::from_source(&source).unwrap().metrics_address,
        None
    );
    source.insert("METRICS_ADDRESS", "localhost");
    let err = Settings::from_source(&source).unwrap_err().to_string();
    assert!(err.contains("METRICS_ADDRESS"), "{err}");
}

#[test]
fn a_pending_ttl_of_zero_means_for_ever() {
    let mut source = base();
    assert_eq!(
        Settings::from_source(&source).unwrap().pending_ttl,
        Some(Duration::from_secs(86_400))
    );
    source.insert("PENDING_ACCOUNT_TTL_SECONDS", "0");
    assert_eq!(Settings::from_source(&source).unwrap().pending_ttl, None);
    source.insert("CODE_LENGTH", "9");
    assert!(Settings::from_source(&source).is_err());
}

#[test]
fn a_missing_required_setting_is_named() {
    for name in ["DATABASE_URL", "REDIS_URL", "SECRET_KEY"] {
        let mut source = base();
        source.remove(name);
        let err = Settings::from_source(&source).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn an_empty_value_counts_as_missing() {
    let mut source = base();
    source.insert("SECRET_KEY", "  ");
    let err = Settings::from_source(&source).unwrap_err();
    assert!(matches!(err, SettingsError::Missing("SECRET_KEY")), "{err}");
}

#[test]
fn bcrypt_cost_takes_the_whole_bcrypt_range_and_nothing_else() {
    for (raw, ok) in [
        ("4", true),
        ("31", true),
        ("3", false),
        ("32", false),
        ("ten", false),
    ] {
        let mut source = base();
        source.insert("BCRYPT_COST", raw);
        let result = Settings::from_source(&source);
        assert_eq!(result.is_ok(), ok, "BCRYPT_COST={raw}");
        if let Err(err) = result {
            assert!(err.to_string().contains("BCRYPT_COST"), "{err}");
        }
    }
}

#[test]
fn a_comma_separated_redis_url_lists_cluster_nodes() {
    let mut source = base();
    source.insert("REDIS_URL", "redis://a:7000, redis://b:7001");
    let settings = Settings::from_source(&source).unwrap();
    assert_eq!(
        settings.redis_url.0,
        vec!["redis://a:7000", "redis://b:7001"]
    );
}

#[test]
fn an_invalid_url_is_refused_without_echoing_it() {
    for (name, value) in [
        ("DATABASE_URL", "postgres://app:hunter2@db host/x"),
        ("DATABASE_URL", "mysql://app:hunter2@localhost/x"),
        ("REDIS_URL", "redis://:hunter2@[::1/"),
        ("EMAIL_API_URL", "hunter2"),
    ] {
        let mut source = base();
        source.insert(name, value);
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(err.contains(name) && !err.contains("hunter2"), "{err}");
    }
}

#[test]
fn smtp_url_takes_lettres_forms_and_hides_its_password() {
    for value in [
        "smtps://mailer:hunter2@smtp.example.com:465",
        "smtp://mailer:hunter2@smtp.example.com:587?tls=required",
        "smtp://127.0.0.1:2525",
    ] {
        let mut source = base();
        source.insert("SMTP_URL", value);
        let settings = Settings::from_source(&source).unwrap();
        assert_eq!(
            settings.smtp_url.as_ref().map(|url| url.0.as_str()),
            Some(value)
        );
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
    for value in [
        "http://mailer:hunter2@smtp.example.com",
        "smtp://mailer:hunter2@smtp.example.com?tls=none",
        "smtps://mailer:hunter2@smtp.example.com?tls=required",
        "smtp://mailer:hunter2@:25",
        "hunter2",
    ] {
        let mut source = base();
        source.insert("SMTP_URL", value);
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(
            err.contains("SMTP_URL") && !err.contains("hunter2"),
            "{value}: {err}"
        );
    }
}

#[test]
fn an_email_api_and_an_smtp_server_together_are_refused_naming_both() {
    let mut source = base();
    source.insert("EMAIL_API_URL", "http://127.0.0.1:8025/v1/send");
    source.insert("SMTP_URL", "smtp://user:hunter2@127.0.0.1:2525");
    let err = Settings::from_source(&source).unwrap_err().to_string();
    assert!(
        err.contains("EMAIL_API_URL") && err.contains("SMTP_URL"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn default_locale_is_lowercased() {
    assert_eq!(Settings::from_source(&base()).unwrap().default_locale, "en");
    let mut source = base();
    source.insert("DEFAULT_LOCALE", "pt-BR");
    assert_eq!(
        Settings::from_source(&source).unwrap().default_locale,
        "pt-br"
    );
}

#[test]
fn debug_output_hides_secrets() {
    let settings = Settings::from_source(&base()).unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(
        !printed.contains("0123456789abcdef0123456789abcdef"),
        "{printed}"
    );
}

#[test]
fn log_format_accepts_text_and_json_only() {
    let mut source = HashMap::new();
    assert_eq!(LogFormat::from_source(&source).unwrap(), LogFormat::Text);
    source.insert("LOG_FORMAT", "json");
    assert_eq!(LogFormat::from_source(&source).unwrap(), LogFormat::Json);
    source.insert("LOG_FORMAT", "xml");
    assert!(LogFormat::from_source(&source).is_err());
}
#[test]
fn urls_lose_their_user_info_and_query() {
    let cases = [
        (
            "http://mailer:api-pass@mail.example.com:8080/v1/send?key=k1&x=y",
            "http://***@mail.example.com:8080/v1/send?***",
        ),
        (
            "postgres://app:hunter2@db.internal/activator",
            "postgres://***@db.internal/activator",
        ),
        (
            "redis://:pw@127.0.0.1:6379/0",
            "redis://***@127.0.0.1:6379/0",
        ),
        (
            "smtps://user@smtp.example.com:465",
            "smtps://***@smtp.example.com:465",
        ),
        (
            "https://api.example.com/send",
            "https://api.example.com/send",
        ),
        ("not a url hunter2", "(not a URL)"),
    ];
    for (url, expected) in cases {
        assert_eq!(redact_url(url), expected, "{url}");
    }
}

#[test]
fn every_default_parses() {
    let settings = LimitSettings::from_source(&NONE).unwrap();
    assert_eq!(settings.attempt_limit, 5);
    assert_eq!(NetworkSettings::default().trusted_proxies.len(), 2);
    let mut source = base();
    source.retain(|name, _| *name == "DATABASE_URL");
    source.insert("REDIS_URL", "redis://localhost/");
    source.insert("SECRET_KEY", "0123456789abcdef0123456789abcdef");
    Settings::from_source(&source).unwrap();
    LogFormat::from_source(&NONE).unwrap();
}

/// `.env.example` lists every variable: those with a default as
/// `NAME=default`, the others set to an example or commented out.
#[test]
fn env_example_agrees_with_the_variables() {
    let example = include_str!("../../.env.example");
    let listed: Vec<(&str, &str)> = example
        .lines()
        .map(|line| line.trim_start_matches("# "))
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .collect();
    for variable in VARIABLES {
        let found = listed.iter().find(|(name, _)| *name == variable.name);
        let Some((_, value)) = found else {
            panic!("{} is not in .env.example", variable.name);
        };
        if let DefaultValue::Value(default) = variable.default {
            assert_eq!(*value, default, "{} in .env.example", variable.name);
        }
    }
    for (name, _) in listed {
        assert!(
            name.starts_with("ROCKET_") || VARIABLES.iter().any(|v| v.name == name),
            ".env.example lists {name}, which activator does not read"
        );
    }
}

/// Every README table row that names a variable gives its default.
#[test]
fn readme_tables_agree_with_the_variables() {
    let readme = include_str!("../../README.md");
    let mut rows = 0;
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, default, ..] = cells[..] else {
            continue;
        };
        let name = name.trim_matches('`');
        let Some(variable) = VARIABLES.iter().find(|v| v.name == name) else {
            continue;
        };
        let expected = match variable.default {
            DefaultValue::Required => "required".to_owned(),
            DefaultValue::Unset => "unset".to_owned(),
            DefaultValue::Value(value) => value.to_owned(),
        };
        assert_eq!(default.trim_matches('`'), expected, "README: {name}");
        rows += 1;
    }
    assert!(rows > 0, "the README has no table of variables");
}

#[test]
fn a_short_or_placeholder_secret_key_stops_start_up_naming_it() {
    let example = include_str!("../../.env.example");
    assert!(
        example.contains(&format!("SECRET_KEY={PLACEHOLDER_SECRET_KEY}\n")),
        ".env.example's placeholder is the one refused"
    );
    for key in [PLACEHOLDER_SECRET_KEY, "0123456789abcdef0123456789abcde"] {
        let mut source = base();
        source.insert("SECRET_KEY", key);
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(err.contains("SECRET_KEY") && !err.contains(key), "{err}");
    }
    let mut source = base();
    source.insert("SECRET_KEY", "0123456789abcdef0123456789abcdef");
    Settings::from_source(&source).unwrap();
}

#[test]
fn secret_key_fallbacks_are_keys_like_secret_key() {
    let mut source = base();
    assert!(
        Settings::from_source(&source)
            .unwrap()
            .secret_key_fallbacks
            .is_empty()
    );
    source.insert(
        "SECRET_KEY_FALLBACKS",
        "the old key of at least thirty-two bytes, another old key of at least 32 bytes",
    );
    assert_eq!(
        Settings::from_source(&source)
            .unwrap()
            .secret_key_fallbacks
            .len(),
        2
    );
    let bad = [
        PLACEHOLDER_SECRET_KEY,
        "the old key of at least thirty-two bytes,short",
    ];
    refused(&source, "SECRET_KEY_FALLBACKS", &bad, "short");
}

#[test]
fn a_fallback_that_is_secret_key_itself_is_refused_without_showing_it() {
    let mut source = base();
    source.insert(
        "SECRET_KEY_FALLBACKS",
        "the old key of at least thirty-two bytes, 0123456789abcdef0123456789abcdef",
    );
    let err = Settings::from_source(&source).unwrap_err().to_string();
    assert!(
        err.contains("SECRET_KEY_FALLBACKS") && err.contains("holds SECRET_KEY itself"),
        "{err}"
    );
    assert!(!err.contains("0123456789abcdef"), "{err}");
}

#[test]
fn a_database_url_may_name_several_hosts_libpq_style() {
    let mut source = base();
    let url =
        "postgresql://app:hunter2@db1:5432,db2:5433/activator?target_session_attrs=read-write";
    source.insert("DATABASE_URL", url);
    let settings = Settings::from_source(&source).unwrap();
    assert_eq!(settings.database.url, url);
    let printed = format!("{settings:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("db1:5432,db2:5433/activator"), "{printed}");
    let bad = [
        "postgresql://app:hunter2@db1:5432,db 2:5433/activator",
        "postgresql://app:hunter2@db1:5432,:99999/activator",
    ];
    refused(&source, "DATABASE_URL", &bad, "hunter2");
}

#[test]
fn webhook_settings_take_standard_webhooks_secrets_and_known_events() {
    let mut source = base();
    assert_eq!(Settings::from_source(&source).unwrap().webhook, None);
    source.insert("WEBHOOK_URL", "http://127.0.0.1:9000/hooks");
    let err = Settings::from_source(&source).unwrap_err().to_string();
    assert!(err.contains("WEBHOOK_SECRET"), "{err}");
    // base64 of 24 bytes, twice: two secrets sign during a rotation.
    source.insert(
        "WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
    );
    let webhook = Settings::from_source(&source).unwrap().webhook.unwrap();
    assert_eq!(webhook.secrets.len(), 2);
    assert!(webhook.activated && !webhook.registered);
    let printed = format!("{webhook:?}");
    assert!(!printed.contains("MfKQ9r8"), "{printed}");
    source.insert("WEBHOOK_EVENTS", "user.activated, user.registered");
    assert!(
        Settings::from_source(&source)
            .unwrap()
            .webhook
            .unwrap()
            .registered
    );
    for (name, value) in [
        ("WEBHOOK_EVENTS", "user.removed"),
        ("WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("WEBHOOK_SECRET", "whsec_c2hvcnQ="),
    ] {
        refused(&source, name, &[value], "MfKQ9r8");
    }
}

#[test]
fn a_sentinel_redis_url_names_its_sentinels_primary_and_credentials() {
    let mut source = base();
    source.insert(
        "REDIS_URL",
        "redis+sentinel://app:hunter%232@s1:26380, s2 ,[::1]:26381/my%20primary/3?sentinel_password=s3cret",
    );
    let settings = Settings::from_source(&source).unwrap();
    let sentinel = settings.redis_url.sentinel().unwrap();
    assert_eq!(
        sentinel.sentinels,
        [
            ("s1".to_owned(), 26380),
            ("s2".to_owned(), 26379),
            ("::1".to_owned(), 26381)
        ]
    );
    assert_eq!(sentinel.primary, "my primary");
    assert_eq!(sentinel.db, 3);
    assert_eq!(sentinel.username.as_deref(), Some("app"));
    assert_eq!(sentinel.password.as_deref(), Some("hunter#2"));
    assert_eq!(sentinel.sentinel_username, None);
    assert_eq!(sentinel.sentinel_password.as_deref(), Some("s3cret"));
    let shown = format!("{:?} {sentinel:?}", settings.redis_url);
    assert!(
        !shown.contains("hunter") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(shown.contains("s1:26380"), "{shown}");

    source.insert("REDIS_URL", "redis+sentinel://:pw@h/mymaster");
    let sentinel = Settings::from_source(&source)
        .unwrap()
        .redis_url
        .sentinel()
        .unwrap();
    assert_eq!((sentinel.username, sentinel.db), (None, 0));
    assert_eq!(sentinel.password.as_deref(), Some("pw"));
    // A plain URL is not the Sentinel form.
    assert!(
        Settings::from_source(&base())
            .unwrap()
            .redis_url
            .sentinel()
            .is_none()
    );
}

#[test]
fn a_bad_sentinel_redis_url_is_one_line_without_the_password() {
    for (value, problem) in [
        ("redis+sentinel://:hunter2@h1:26379", "primary"),
        ("redis+sentinel://:hunter2@h1:26379/", "primary"),
        ("redis+sentinel://:hunter2@h1:x/mymaster", "port"),
        ("redis+sentinel://:hunter2@h1:0/mymaster", "port"),
        ("redis+sentinel://:hunter2@h1,,h2/mymaster", "Sentinel"),
        ("redis+sentinel://:hunter2@h1/mymaster/db", "number"),
        ("redis+sentinel://:hunter2@h1/mymaster/0/x", "path"),
        (
            "redis+sentinel://:hunter2@h1/mymaster?password=hunter2",
            "parameters",
        ),
        ("rediss+sentinel://:hunter2@h1/mymaster", "TLS"),
    ] {
        let mut source = base();
        source.insert("REDIS_URL", value);
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(
            err.contains("REDIS_URL") && err.contains(problem) && !err.contains("hunter2"),
            "{value}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
