//! The activation email's templates (handlebars): a subject, a text body and
//! an HTML body. The ones in `templates/` are compiled in; `TEMPLATES_DIR`
//! may override any of them at run time. Every template is rendered once with
//! sample data when loaded, so a broken one stops start-up instead of the
//! first registration.

use std::path::Path;
use std::time::Duration;

use handlebars::Handlebars;
use serde::Serialize;

use crate::code::Code;
use crate::duration::Unit;

/// The language of every email, for now.
pub const DEFAULT_LOCALE: &str = "en";

/// File names inside `templates/` (or `TEMPLATES_DIR`).
const SUBJECT: &str = "activation_subject.hbs";
const TEXT: &str = "activation.txt.hbs";
const HTML: &str = "activation.html.hbs";

const BUILT_IN: [(&str, &str); 3] = [
    (
        SUBJECT,
        include_str!("../../templates/activation_subject.hbs"),
    ),
    (TEXT, include_str!("../../templates/activation.txt.hbs")),
    (HTML, include_str!("../../templates/activation.html.hbs")),
];

/// A template that cannot be read, parsed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read email template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("email template {name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
}

/// A rendered activation email.
#[derive(Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("subject", &"..")
            .finish_non_exhaustive()
    }
}

/// The compiled templates. Text parts (subject, text body) are rendered
/// without HTML escaping, the HTML body with it.
pub struct Templates {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
}

#[derive(Serialize)]
struct ActivationData<'a> {
    email: &'a str,
    code: &'a str,
    /// "1 minute", "90 seconds", "5 minutes".
    valid_for: String,
    valid_seconds: u64,
}

impl Templates {
    /// The built-in templates, each replaced by the file of the same name in
    /// `dir` if there is one.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        if let Some(dir) = dir.filter(|dir| !dir.is_dir()) {
            return Err(TemplateError::Read {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        let mut html = Handlebars::new();
        html.set_strict_mode(true);

        for (name, built_in) in BUILT_IN {
            let source = match dir.map(|dir| dir.join(name)) {
                Some(path) if path.exists() => {
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                _ => built_in.to_owned(),
            };
            let registry = if name == HTML { &mut html } else { &mut text };
            registry
                .register_template_string(name, source)
                .map_err(|err| TemplateError::Invalid {
                    name,
                    message: err.to_string(),
                })?;
        }

        let templates = Self { text, html };
        templates.activation(
            "someone@example.com",
            &Code::generate(crate::code::LENGTHS.end().to_owned()),
            Duration::from_secs(60),
        )?;
        Ok(templates)
    }

    /// Renders the activation email for `email` with `code`, valid for `ttl`.
    pub fn activation(
        &self,
        email: &str,
        code: &Code,
        ttl: Duration,
    ) -> Result<Rendered, TemplateError> {
        let data = ActivationData {
            email,
            code: code.as_str(),
            valid_for: in_words(ttl),
            valid_seconds: ttl.as_secs(),
        };
        let render = |registry: &Handlebars<'static>, name: &'static str| {
            registry
                .render(name, &data)
                .map_err(|err| TemplateError::Invalid {
                    name,
                    message: err.to_string(),
                })
        };
        Ok(Rendered {
            subject: render(&self.text, SUBJECT)?.trim().to_owned(),
            text: render(&self.text, TEXT)?,
            html: render(&self.html, HTML)?,
        })
    }
}

/// "1 minute", "90 seconds", "2 hours": exact, in the largest unit that
/// divides the duration.
fn in_words(duration: Duration) -> String {
    let (n, unit) = crate::duration::exact(duration);
    let unit = match unit {
        Unit::Second => "second",
        Unit::Minute => "minute",
        Unit::Hour => "hour",
        Unit::Day => "day",
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_states_the_code_and_how_long_it_is_valid() {
        let templates = Templates::load(None).unwrap();
        let code = Code::from_digits("0427").unwrap();
        let mail = templates
            .activation("a&b@example.com", &code, Duration::from_secs(60))
            .unwrap();
        assert_eq!(mail.subject, "Your activation code");
        assert!(mail.text.contains("0427") && mail.text.contains("1 minute"));
        assert!(mail.text.contains("a&b@example.com"), "text is not escaped");
        assert!(mail.html.contains("0427") && mail.html.contains("1 minute"));
        assert!(mail.html.contains("a&amp;b@example.com"), "html is escaped");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(in_words(Duration::from_secs(1)), "1 second");
        assert_eq!(in_words(Duration::from_secs(60)), "1 minute");
        assert_eq!(in_words(Duration::from_secs(90)), "90 seconds");
        assert_eq!(in_words(Duration::from_secs(300)), "5 minutes");
        assert_eq!(in_words(Duration::from_secs(7200)), "2 hours");
    }

    #[test]
    fn a_templates_dir_overrides_single_templates() {
        let dir = std::env::temp_dir().join(format!("activator-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SUBJECT), "Code {{code}} inside").unwrap();
        let templates = Templates::load(Some(&dir)).unwrap();
        let mail = templates
            .activation(
                "a@example.com",
                &Code::from_digits("1111").unwrap(),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(mail.subject, "Code 1111 inside");
        assert!(mail.text.contains("Your activation code is: 1111"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_template_is_refused_at_load_time() {
        let dir = std::env::temp_dir().join(format!("activator-broken-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(HTML), "<p>{{#if code}}unclosed</p>").unwrap();
        let err = Templates::load(Some(&dir)).err().unwrap();
        assert!(err.to_string().contains(HTML), "{err}");
        std::fs::write(dir.join(HTML), "<p>{{no_such_variable}}</p>").unwrap();
        let err = Templates::load(Some(&dir)).err().unwrap();
        assert!(err.to_string().contains(HTML), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
