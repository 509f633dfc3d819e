//! The activation email's templates (handlebars), one folder per locale:
//! `templates/<locale>/` holds `subject.hbs`, `body.txt.hbs`,
//! `body.html.hbs` and `locale.toml` (the words for durations). The shipped
//! locales are compiled in; `TEMPLATES_DIR` may override any of their files
//! (`TEMPLATES_DIR/fr/subject.hbs`) or add a locale (a folder with all four
//! files). Every locale is rendered once with sample data when loaded, so a
//! broken template stops start-up, named, instead of the first registration.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use handlebars::Handlebars;
use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::duration::Unit;
use crate::locale::{Locale, Locales};

/// File names inside a locale's folder.
const SUBJECT: &str = "subject.hbs";
const TEXT: &str = "body.txt.hbs";
const HTML: &str = "body.html.hbs";
const WORDS: &str = "locale.toml";
const FILES: [&str; 4] = [SUBJECT, TEXT, HTML, WORDS];
/// The notice to an active account's owner that someone tried to register
/// its address (`REGISTRATION_DISCLOSURE=hidden`): subject, text, HTML.
/// Optional in a locale only `TEMPLATES_DIR` has: the default locale's
/// notice is sent instead.
const NOTICE_SUBJECT: &str = "exists_subject.hbs";
const NOTICE_FILES: [&str; 3] = [NOTICE_SUBJECT, "exists.txt.hbs", "exists.html.hbs"];

/// The file names of the single-language layout, refused in `TEMPLATES_DIR`
/// rather than silently ignored.
const OLD_FILES: [&str; 3] = [
    "activation_subject.hbs",
    "activation.txt.hbs",
    "activation.html.hbs",
];

/// The shipped locales' `files` (literals, in the order of a `*_FILES`
/// list), compiled in: `[(locale, [contents, ...]), ...]`.
macro_rules! shipped {
    ($files:tt for $($locale:literal),+) => {
        [$(shipped!(@locale $locale $files)),+]
    };
    (@locale $locale:literal [$($file:literal),+]) => {
        (
            $locale,
            [$(include_str!(concat!("../../templates/", $locale, "/", $file))),+],
        )
    };
}

/// The shipped locales, their files in the order of [`FILES`].
const BUILT_IN: [(&str, [&str; 4]); 4] = shipped!(
    ["subject.hbs", "body.txt.hbs", "body.html.hbs", "locale.toml"]
    for "en", "fr", "de", "es"
);

/// The shipped locales' notices, in the order of [`NOTICE_FILES`].
const BUILT_IN_NOTICES: [(&str, [&str; 3]); 4] = shipped!(
    ["exists_subject.hbs", "exists.txt.hbs", "exists.html.hbs"]
    for "en", "fr", "de", "es"
);

/// A template that cannot be read, parsed or rendered, or a locale that
/// cannot be used; the message names the file or the setting.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read email template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("email template {name} is invalid: {message}")]
    Invalid { name: String, message: String },
    #[error(
        "email template {path} is in the old single-language layout: move it into a locale folder, as {dir}/en/{new}"
    )]
    OldLayout {
        path: String,
        dir: String,
        new: &'static str,
    },
    #[error("invalid setting DEFAULT_LOCALE: no templates for {0:?} (have {1})")]
    UnknownDefault(String, String),
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

/// A locale's words for the units of a duration: `[singular, plural]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Words {
    second: [String; 2],
    minute: [String; 2],
    hour: [String; 2],
    day: [String; 2],
}

impl Words {
    /// "1 minute", "90 secondes", "2 Stunden": exact, in the largest unit
    /// that divides the duration; the singular for exactly one.
    fn duration(&self, duration: Duration) -> String {
        let (n, unit) = crate::duration::exact(duration);
        let [singular, plural] = match unit {
            Unit::Second => &self.second,
            Unit::Minute => &self.minute,
            Unit::Hour => &self.hour,
            Unit::Day => &self.day,
        };
        format!("{n} {}", if n == 1 { singular } else { plural })
    }
}

/// The compiled templates of every locale. Text parts (subject, text body)
/// are rendered without HTML escaping, the HTML body with it. Templates are
/// registered as `<locale>/<file>`.
pub struct Templates {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
    /// Locale (lowercase) → its duration words; also the list of locales.
    words: BTreeMap<String, Words>,
    /// The locales that have the notice of an account that exists.
    notices: std::collections::BTreeSet<String>,
    default: Locale,
}

#[derive(Serialize)]
struct NoticeData<'a> {
    email: &'a str,
}

#[derive(Serialize)]
struct ActivationData<'a> {
    email: &'a str,
    code: &'a str,
    /// "1 minute", "90 secondes", "5 Minuten".
    valid_for: String,
    valid_seconds: u64,
}

/// A locale folder's name as a locale: a language tag such as `fr` or
/// `pt-br` (compared in lowercase).
fn locale_name(name: &str) -> Option<String> {
    Locale::parse(name).map(|locale| locale.as_str().to_owned())
}

impl Templates {
    /// The shipped locales, each file replaced by the one of the same name
    /// in `dir/<locale>/` if there is one, plus the locales only `dir` has.
    /// `default` must be one of them.
    pub fn load(dir: Option<&Path>, default: &str) -> Result<Self, TemplateError> {
        let mut sources: BTreeMap<String, [Option<(String, String)>; 4]> = BUILT_IN
            .iter()
            .map(|(locale, files)| {
                let files = std::array::from_fn(|i| {
                    Some((format!("{locale}/{}", FILES[i]), files[i].to_owned()))
                });
                ((*locale).to_owned(), files)
            })
            .collect();
        let mut notice_sources: BTreeMap<String, [Option<(String, String)>; 3]> = BUILT_IN_NOTICES
            .iter()
            .map(|(locale, files)| {
                let files = std::array::from_fn(|i| {
                    Some((format!("{locale}/{}", NOTICE_FILES[i]), files[i].to_owned()))
                });
                ((*locale).to_owned(), files)
            })
            .collect();
        if let Some(dir) = dir {
            overrides(dir, &mut sources)?;
            notice_overrides(dir, &mut notice_sources)?;
        }

        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut words = BTreeMap::new();
        for (locale, files) in sources {
            let mut files = files.into_iter().zip(FILES);
            let mut next = || -> Result<(String, String), TemplateError> {
                let (file, name) = files.next().unwrap_or((None, ""));
                file.ok_or_else(|| TemplateError::Read {
                    path: format!("{locale}/{name}"),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "a locale that is not built in needs all of subject.hbs, body.txt.hbs, body.html.hbs and locale.toml",
                    ),
                })
            };
            for file in [SUBJECT, TEXT, HTML] {
                let (name, source) = next()?;
                let registry = if file == HTML { &mut html } else { &mut text };
                registry
                    .register_template_string(&format!("{locale}/{file}"), source)
                    .map_err(|err| TemplateError::Invalid {
                        name,
                        message: err.to_string(),
                    })?;
            }
            let (name, source) = next()?;
            let parsed: Words = toml::from_str(&source).map_err(|err| TemplateError::Invalid {
                name,
                message: err.message().to_owned(),
            })?;
            words.insert(locale, parsed);
        }

        let mut notices = std::collections::BTreeSet::new();
        for (locale, files) in notice_sources {
            // A notice in part is a mistake; none at all, the default's.
            if files.iter().all(Option::is_none) {
                continue;
            }
            for (file, name) in files.into_iter().zip(NOTICE_FILES) {
                let (path, source) = file.ok_or_else(|| TemplateError::Read {
                    path: format!("{locale}/{name}"),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "a notice needs all of exists_subject.hbs, exists.txt.hbs and exists.html.hbs",
                    ),
                })?;
                let registry = if name.ends_with(".html.hbs") {
                    &mut html
                } else {
                    &mut text
                };
                registry
                    .register_template_string(&format!("{locale}/{name}"), source)
                    .map_err(|err| TemplateError::Invalid {
                        name: path,
                        message: err.to_string(),
                    })?;
            }
            notices.insert(locale);
        }

        let Some(default) = Locale::parse(default).filter(|tag| words.contains_key(tag.as_str()))
        else {
            let have = words.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(TemplateError::UnknownDefault(default.to_owned(), have));
        };
        let templates = Self {
            text,
            html,
            words,
            notices,
            default,
        };
        let sample = Code::generate(crate::code::LENGTHS.end().to_owned());
        for locale in templates.words.keys() {
            templates.activation(
                locale,
                "someone@example.com",
                &sample,
                Duration::from_secs(60),
            )?;
            templates.account_exists(locale, "someone@example.com")?;
        }
        Ok(templates)
    }

    /// Renders the notice to an active account's owner that someone tried
    /// to register `email` again, in `locale` if it has one, else in the
    /// default locale's (or English).
    pub fn account_exists(&self, locale: &str, email: &str) -> Result<Rendered, TemplateError> {
        let locale = [self.resolve(locale), self.default.as_str(), "en"]
            .into_iter()
            .find(|locale| self.notices.contains(*locale))
            .unwrap_or("en");
        let data = NoticeData { email };
        let render = |registry: &Handlebars<'static>, file: &str| {
            let name = format!("{locale}/{file}");
            registry
                .render(&name, &data)
                .map_err(|err| TemplateError::Invalid {
                    name,
                    message: err.to_string(),
                })
        };
        let [subject, text, html] = NOTICE_FILES;
        Ok(Rendered {
            subject: render(&self.text, subject)?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            text: render(&self.text, text)?,
            html: render(&self.html, html)?,
        })
    }

    /// The locales emails can be written in, and the default: what a
    /// client's `Accept-Language` is negotiated against.
    pub fn locales(&self) -> Locales {
        let known = self.words.keys().filter_map(|tag| Locale::parse(tag));
        Locales::new(known, self.default.clone())
    }

    /// `locale` if there are templates for it, else the default: a locale
    /// stored with an account may since have been removed.
    fn resolve<'a>(&'a self, locale: &'a str) -> &'a str {
        match self.words.get_key_value(locale) {
            Some((known, _)) => known,
            None => self.default.as_str(),
        }
    }

    /// Renders the activation email in `locale` (or the default, if there
    /// is no such locale) for `email` with `code`, valid for `ttl`.
    pub fn activation(
        &self,
        locale: &str,
        email: &str,
        code: &Code,
        ttl: Duration,
    ) -> Result<Rendered, TemplateError> {
        let locale = self.resolve(locale);
        let words = self
            .words
            .get(locale)
            .ok_or_else(|| TemplateError::UnknownDefault(locale.to_owned(), String::new()))?;
        let data = ActivationData {
            email,
            code: code.as_str(),
            valid_for: words.duration(ttl),
            valid_seconds: ttl.as_secs(),
        };
        let render = |registry: &Handlebars<'static>, file: &str| {
            let name = format!("{locale}/{file}");
            registry
                .render(&name, &data)
                .map_err(|err| TemplateError::Invalid {
                    name,
                    message: err.to_string(),
                })
        };
        Ok(Rendered {
            // One line: a subject is a header.
            subject: render(&self.text, SUBJECT)?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            text: render(&self.text, TEXT)?,
            html: render(&self.html, HTML)?,
        })
    }
}

/// Replaces files of `sources` by those in `dir/<locale>/`, and adds the
/// locales only `dir` has.
fn overrides(
    dir: &Path,
    sources: &mut BTreeMap<String, [Option<(String, String)>; 4]>,
) -> Result<(), TemplateError> {
    let read_error = |path: &Path, source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    };
    if !dir.is_dir() {
        return Err(read_error(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    for old in OLD_FILES {
        let path = dir.join(old);
        if path.exists() {
            let new = match old {
                "activation_subject.hbs" => SUBJECT,
                "activation.txt.hbs" => TEXT,
                _ => HTML,
            };
            return Err(TemplateError::OldLayout {
                path: path.display().to_string(),
                dir: dir.display().to_string(),
                new,
            });
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|err| read_error(dir, err))?;
    for entry in entries {
        let path = entry.map_err(|err| read_error(dir, err))?.path();
        if !path.is_dir() {
            continue;
        }
        let Some(locale) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(locale_name)
        else {
            continue;
        };
        let files = sources.entry(locale).or_default();
        for (slot, file) in files.iter_mut().zip(FILES) {
            let path = path.join(file);
            if path.exists() {
                let source =
                    std::fs::read_to_string(&path).map_err(|err| read_error(&path, err))?;
                *slot = Some((path.display().to_string(), source));
            }
        }
    }
    Ok(())
}

/// Replaces notice files of `sources` by those in `dir/<locale>/`, and
/// adds the locales only `dir` has a notice for.
fn notice_overrides(
    dir: &Path,
    sources: &mut BTreeMap<String, [Option<(String, String)>; 3]>,
) -> Result<(), TemplateError> {
    let read_error = |path: &Path, source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(|err| read_error(dir, err))?;
    for entry in entries {
        let path = entry.map_err(|err| read_error(dir, err))?.path();
        let Some(locale) = path
            .is_dir()
            .then(|| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .and_then(locale_name)
            })
            .flatten()
        else {
            continue;
        };
        for (i, file) in NOTICE_FILES.iter().enumerate() {
            let path = path.join(file);
            if path.exists() {
                let source =
                    std::fs::read_to_string(&path).map_err(|err| read_error(&path, err))?;
                sources.entry(locale.clone()).or_default()[i] =
                    Some((path.display().to_string(), source));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_locale_has_the_notice_of_an_account_that_exists() {
        let templates = Templates::load(None, DEFAULT_LOCALE).unwrap();
        for (locale, subject) in [
            ("en", "Someone tried to register with your address"),
            ("fr", "Quelqu’un a tenté de s’inscrire avec votre adresse"),
            ("de", "Jemand wollte sich mit Ihrer Adresse registrieren"),
            ("es", "Alguien intentó registrarse con su dirección"),
        ] {
            let mail = templates.account_exists(locale, "a&b@example.com").unwrap();
            assert_eq!(mail.subject, subject);
            assert!(mail.text.contains("a&b@example.com"), "{locale}");
            assert!(mail.html.contains("a&amp;b@example.com"), "{locale}");
            assert!(mail.html.contains(&format!("lang=\"{locale}\"")));
            assert!(!mail.text.chars().any(|c| c.is_ascii_digit()), "no code");
        }
        assert_eq!(
            templates
                .account_exists("it", "a@example.com")
                .unwrap()
                .subject,
            "Someone tried to register with your address"
        );
    }

    const DEFAULT_LOCALE: &str = "en";

    fn code(digits: &str) -> Code {
        Code::from_digits(digits).unwrap()
    }

    fn temp_dir(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "activator-templates-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_email_states_the_code_and_how_long_it_is_valid() {
        let templates = Templates::load(None, DEFAULT_LOCALE).unwrap();
        let mail = templates
            .activation(
                "en",
                "a&b@example.com",
                &code("0427"),
                Duration::from_secs(60),
            )
            .unwrap();
        // No code in the subject: inbox previews and logs show subjects.
        assert_eq!(mail.subject, "Your activation code");
        assert!(mail.text.contains("Your activation code is: 0427"));
        assert!(mail.text.contains("1 minute"));
        assert!(mail.text.contains("a&b@example.com"), "text is not escaped");
        assert!(mail.html.contains("0427") && mail.html.contains("1 minute"));
        assert!(mail.html.contains("a&amp;b@example.com"), "html is escaped");
    }

    #[test]
    fn every_shipped_locale_writes_the_code_line_and_the_duration_in_its_language() {
        let templates = Templates::load(None, DEFAULT_LOCALE).unwrap();
        assert_eq!(
            templates
                .locales()
                .iter()
                .map(Locale::as_str)
                .collect::<Vec<_>>(),
            ["de", "en", "es", "fr"]
        );
        let cases = [
            (
                "en",
                "Your activation code",
                "Your activation code is: 12345678",
                "90 seconds",
            ),
            (
                "fr",
                "Votre code d’activation",
                "Votre code d’activation est\u{a0}: 12345678",
                "90 secondes",
            ),
            (
                "de",
                "Ihr Aktivierungscode",
                "Ihr Aktivierungscode lautet: 12345678",
                "90 Sekunden",
            ),
            (
                "es",
                "Su código de activación",
                "Su código de activación es: 12345678",
                "90 segundos",
            ),
        ];
        for (locale, subject, line, duration) in cases {
            let mail = templates
                .activation(
                    locale,
                    "a@example.com",
                    &code("12345678"),
                    Duration::from_secs(90),
                )
                .unwrap();
            assert_eq!(mail.subject, subject);
            assert!(
                mail.text.lines().any(|l| l == line),
                "{locale}: {}",
                mail.text
            );
            assert!(mail.text.contains(duration), "{locale}: {}", mail.text);
            assert!(mail.html.contains(&format!("lang=\"{locale}\"")));
            assert!(!mail.subject.contains("12345678"));
        }
        let mail = templates
            .activation(
                "de",
                "a@example.com",
                &code("1234"),
                Duration::from_secs(7200),
            )
            .unwrap();
        assert!(
            mail.text.contains("Der Code ist 2 Stunden gültig."),
            "{}",
            mail.text
        );
        let mail = templates
            .activation(
                "fr",
                "a@example.com",
                &code("1234"),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(mail.text.contains("valable 1 minute."), "{}", mail.text);
    }

    #[test]
    fn an_unknown_locale_is_written_in_the_default_one() {
        let templates = Templates::load(None, "de").unwrap();
        assert_eq!(templates.resolve("it"), "de");
        assert_eq!(templates.resolve("fr"), "fr");
        let mail = templates
            .activation(
                "it",
                "a@example.com",
                &code("1234"),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(mail.subject, "Ihr Aktivierungscode");
        let err = Templates::load(None, "it").err().unwrap().to_string();
        assert!(
            err.contains("DEFAULT_LOCALE") && err.contains("\"it\""),
            "{err}"
        );
        let err = Templates::load(None, "../etc").err().unwrap().to_string();
        assert!(err.contains("DEFAULT_LOCALE"), "{err}");
    }

    #[test]
    fn a_templates_dir_overrides_single_files_and_adds_locales() {
        let dir = temp_dir("override");
        std::fs::create_dir_all(dir.join("fr")).unwrap();
        std::fs::write(dir.join("fr").join(SUBJECT), "Code pour {{email}}").unwrap();
        let it = dir.join("it");
        std::fs::create_dir_all(&it).unwrap();
        std::fs::write(it.join(SUBJECT), "Il suo codice di attivazione").unwrap();
        std::fs::write(
            it.join(TEXT),
            "Il suo codice di attivazione è: {{code}}\nValido per {{valid_for}}.\n",
        )
        .unwrap();
        std::fs::write(it.join(HTML), "<p>{{code}}</p>").unwrap();
        std::fs::write(
            it.join(WORDS),
            "second = [\"secondo\", \"secondi\"]\nminute = [\"minuto\", \"minuti\"]\nhour = [\"ora\", \"ore\"]\nday = [\"giorno\", \"giorni\"]\n",
        )
        .unwrap();
        let templates = Templates::load(Some(&dir), DEFAULT_LOCALE).unwrap();
        let mail = templates
            .activation(
                "fr",
                "a@example.com",
                &code("1111"),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(mail.subject, "Code pour a@example.com");
        assert!(
            mail.text
                .contains("Votre code d’activation est\u{a0}: 1111")
        );
        let mail = templates
            .activation(
                "it",
                "a@example.com",
                &code("1111"),
                Duration::from_secs(120),
            )
            .unwrap();
        assert!(
            mail.text.contains("è: 1111\nValido per 2 minuti."),
            "{}",
            mail.text
        );
        assert_eq!(templates.locales().negotiate(Some("it-IT")).as_str(), "it");
        // Without a notice of its own, a new locale's owners get the default's.
        assert_eq!(
            templates
                .account_exists("it", "a@example.com")
                .unwrap()
                .subject,
            "Someone tried to register with your address"
        );
        // A notice in part is refused, naming the file missing.
        std::fs::write(it.join(NOTICE_SUBJECT), "Qualcuno").unwrap();
        let err = Templates::load(Some(&dir), DEFAULT_LOCALE).err().unwrap();
        assert!(err.to_string().contains("it/exists.txt.hbs"), "{err}");
        std::fs::remove_file(it.join(NOTICE_SUBJECT)).unwrap();

        // A new locale needs every file.
        std::fs::remove_file(it.join(WORDS)).unwrap();
        let err = Templates::load(Some(&dir), DEFAULT_LOCALE).err().unwrap();
        assert!(err.to_string().contains("it/locale.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_template_is_refused_at_load_time_naming_it() {
        let dir = temp_dir("broken");
        let de = dir.join("de");
        std::fs::create_dir_all(&de).unwrap();
        std::fs::write(de.join(HTML), "<p>{{#if code}}unclosed</p>").unwrap();
        let err = Templates::load(Some(&dir), DEFAULT_LOCALE).err().unwrap();
        assert!(err.to_string().contains("de/body.html.hbs"), "{err}");
        std::fs::write(de.join(HTML), "<p>{{no_such_variable}}</p>").unwrap();
        let err = Templates::load(Some(&dir), DEFAULT_LOCALE).err().unwrap();
        assert!(err.to_string().contains("de/body.html.hbs"), "{err}");
        std::fs::remove_file(de.join(HTML)).unwrap();
        std::fs::write(de.join(WORDS), "second = \"Sekunde\"\n").unwrap();
        let err = Templates::load(Some(&dir), DEFAULT_LOCALE).err().unwrap();
        assert!(err.to_string().contains("de/locale.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn templates_of_the_old_layout_are_refused_with_where_they_go() {
        let dir = temp_dir("old");
        std::fs::write(dir.join("activation.txt.hbs"), "{{code}}").unwrap();
        let err = Templates::load(Some(&dir), DEFAULT_LOCALE)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("activation.txt.hbs") && err.contains("en/body.txt.hbs"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_read_naturally() {
        let templates = Templates::load(None, DEFAULT_LOCALE).unwrap();
        let en = &templates.words["en"];
        assert_eq!(en.duration(Duration::from_secs(1)), "1 second");
        assert_eq!(en.duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(en.duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(en.duration(Duration::from_secs(300)), "5 minutes");
        assert_eq!(en.duration(Duration::from_secs(7200)), "2 hours");
        assert_eq!(en.duration(Duration::from_secs(172_800)), "2 days");
        let es = &templates.words["es"];
        assert_eq!(es.duration(Duration::from_secs(86_400)), "1 día");
    }
}
