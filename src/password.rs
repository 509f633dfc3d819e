//! Passwords: the policy, and bcrypt kept off the async workers.
//!
//! bcrypt is deliberately slow (about 220 ms a hash at cost 12), so it runs on
//! Tokio's blocking pool behind a semaphore with one permit per core: more
//! hashes in flight than cores only adds latency. Callers beyond that wait in
//! a bounded queue; when the queue is full the caller gets [`HashError::Busy`]
//! (a 503) at once instead of queueing without bound. The queue is fair:
//! one client IP holds at most `HASH_QUEUE_PER_IP` places in it (waiting or
//! hashing), beyond which its requests get [`HashError::ClientBusy`] (a 429)
//! at once, so one flooding client cannot take every other's turn.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::client_ip::ClientIp;
use crate::settings::BCRYPT_COSTS;
use crate::turns::Turns;

/// A password as received: never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A bcrypt hash as stored: never printed.
#[derive(Clone)]
pub struct PasswordHash(pub String);

impl PasswordHash {
    /// The cost the hash was made with (`$2b$12$…` → 12), if it is bcrypt's.
    pub fn cost(&self) -> Option<u32> {
        let mut parts = self.0.split('$');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(""), Some(_version), Some(cost)) if cost.len() == 2 => cost.parse().ok(),
            _ => None,
        }
    }
}

/// Whether two bcrypt hashes are one password under one salt and cost
/// (whatever their version prefix: `$2a$`, `$2b$`, `$2y$`), compared in
/// constant time. Malformed hashes match nothing.
pub fn same_digest(a: &PasswordHash, b: &PasswordHash) -> bool {
    use subtle::ConstantTimeEq;
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => {
            let (a, b) = (
                a.format_for_version(bcrypt::Version::TwoB),
                b.format_for_version(bcrypt::Version::TwoB),
            );
            a.as_bytes().ct_eq(b.as_bytes()).into()
        }
        _ => false,
    }
}

/// Whether two bcrypt hashes were made with one salt and cost.
pub fn same_salt(a: &PasswordHash, b: &PasswordHash) -> bool {
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a.get_salt() == b.get_salt() && a.get_cost() == b.get_cost(),
        _ => false,
    }
}

fn parts(hash: &PasswordHash) -> Option<bcrypt::HashParts> {
    hash.0.parse().ok()
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// The shortest password accepted, in characters.
pub const MIN_LENGTH: usize = 8;
/// The longest password accepted, in characters; and in UTF-8 bytes, since
/// bcrypt ignores anything past 72 of them.
pub const MAX_LENGTH: usize = 72;
/// The policy in words, for the API's documentation.
pub const POLICY: &str = "8–72 characters and at most 72 bytes (bcrypt reads no more), no \
                          whitespace, with a lowercase and an uppercase letter (A–Z, a–z), \
                          a digit and a special character.";

/// The validator's rules as a regular expression, for the API's schema: a
/// lowercase and an uppercase ASCII letter, a digit, a character that is
/// none of these, and neither whitespace nor control characters anywhere.
/// [`check_policy`] is the rule; a test holds the two together.
pub const PATTERN: &str =
    r"^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)(?=.*[^A-Za-z0-9])[^\s\x00-\x1f\x7f-\x9f]*$";

/// Why a password is refused, in the order the original service checked:
/// its length (pydantic's constraints), then its validator's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer than [`MIN_LENGTH`] characters.
    TooShort,
    /// More than [`MAX_LENGTH`] characters.
    TooLong,
    /// More than [`MAX_LENGTH`] UTF-8 bytes: the original let bcrypt cut it.
    TooManyBytes,
    /// A rule of the validator, with the original's sentence.
    Rule(&'static str),
}

/// Checks the password policy ([`POLICY`]).
pub fn check_policy(password: &str) -> Result<(), Refusal> {
    let characters = password.chars().count();
    if characters < MIN_LENGTH {
        return Err(Refusal::TooShort);
    }
    if characters > MAX_LENGTH {
        return Err(Refusal::TooLong);
    }
    if password.len() > MAX_LENGTH {
        return Err(Refusal::TooManyBytes);
    }
    let first_or_last_space = password.chars().next().is_some_and(python_space)
        || password.chars().next_back().is_some_and(python_space);
    if first_or_last_space {
        return Err(Refusal::Rule(
            "Password cannot contain leading or trailing spaces",
        ));
    }
    if password.chars().any(python_space) {
        return Err(Refusal::Rule(
            "Password cannot contain whitespace characters",
        ));
    }
    // Such a password could never be sent back as Basic credentials.
    if password.chars().any(char::is_control) {
        return Err(Refusal::Rule("Password cannot contain control characters"));
    }
    // The original's classes, as regular expressions read them: `[a-z]`,
    // `[A-Z]`, `\d` (any script's decimal digit), `[^A-Za-z0-9]`.
    let complex = password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(decimal_digit)
        && password.chars().any(|c| !c.is_ascii_alphanumeric());
    if !complex {
        return Err(Refusal::Rule(
            "Password must include at least one lowercase letter, one uppercase letter, one digit, and one special character",
        ));
    }
    Ok(())
}

/// Python's `str.isspace`: general category Zs, or bidi class WS, B or S
/// (which takes in the separators U+001C–U+001F, unlike Rust's
/// `char::is_whitespace`).
pub fn python_space(c: char) -> bool {
    use icu_properties::CodePointMapData;
    use icu_properties::props::{BidiClass, GeneralCategory};
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::SpaceSeparator
        || matches!(
            CodePointMapData::<BidiClass>::new().get(c),
            BidiClass::WhiteSpace | BidiClass::ParagraphSeparator | BidiClass::SegmentSeparator
        )
}

/// A decimal digit of any script (general category Nd), as `\d` matched.
pub fn decimal_digit(c: char) -> bool {
    use icu_properties::CodePointMapData;
    use icu_properties::props::GeneralCategory;
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::DecimalNumber
}

/// Why hashing or verifying did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password hashes waiting")]
    Busy,
    #[error("this client holds its share of the password-hash queue")]
    ClientBusy,
    #[error("bcrypt failed: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords with bounded concurrency. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    /// The cores' turns, round robin across clients (an IPv4 address, an
    /// IPv6 /48; exempt callers as one more), none but the exempt holding
    /// every core at once.
    turns: Turns<Option<IpAddr>>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Places in the queue held by each client IP, and how many one may hold.
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_client: usize,
    /// Verified against when the account does not exist, so that an unknown
    /// email costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl Hasher {
    /// A hasher at `cost` with one permit per core, a wait queue of 32
    /// callers per core, and `per_client` places in it for one client IP.
    pub fn new(cost: u32, per_client: usize) -> Result<Self, bcrypt::BcryptError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_concurrency(cost, cores, cores * 32, per_client)
    }

    pub fn with_concurrency(
        cost: u32,
        in_flight: usize,
        max_waiting: usize,
        per_client: usize,
    ) -> Result<Self, bcrypt::BcryptError> {
        if !BCRYPT_COSTS.contains(&cost) {
            return Err(bcrypt::BcryptError::CostNotAllowed(cost));
        }
        Ok(Self {
            cost,
            // Exempt callers (and the CLI) are one client the cap spares.
            turns: Turns::new(in_flight).uncapped(None),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            per_client: Arc::default(),
            max_per_client: per_client.max(1),
            dummy_hash: dummy_hash(cost),
        })
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Hashes `password` for `client` (see [`ClientIp`]).
    pub async fn hash(
        &self,
        password: &Password,
        client: ClientIp,
    ) -> Result<PasswordHash, HashError> {
        let password = password.0.clone();
        let cost = self.cost;
        let hash = self
            .run(client, "hash", move || bcrypt::hash(password, cost))
            .await??;
        crate::metrics::get().hashed("hash");
        Ok(PasswordHash(hash))
    }

    /// Hashes `password` for `client` with the cost and salt of `like` (a
    /// pending registration's hash), for a claim: the hashes of one
    /// address's passwords then compare without more bcrypt work (see
    /// [`same_digest`]). A malformed `like` gets a fresh salt.
    pub async fn hash_like(
        &self,
        password: &Password,
        like: &PasswordHash,
        client: ClientIp,
    ) -> Result<PasswordHash, HashError> {
        self.hash_with_salt_of(password, like, client, "hash").await
    }

    /// [`Hasher::hash_like`] to check `password` against a pending address
    /// whose passwords share `like`'s salt: one computation whatever their
    /// number, the cost of one verification (and counted as one).
    pub async fn digest_like(
        &self,
        password: &Password,
        like: &PasswordHash,
        client: ClientIp,
    ) -> Result<PasswordHash, HashError> {
        self.hash_with_salt_of(password, like, client, "verify")
            .await
    }

    async fn hash_with_salt_of(
        &self,
        password: &Password,
        like: &PasswordHash,
        client: ClientIp,
        work: &'static str,
    ) -> Result<PasswordHash, HashError> {
        let Some(like) = parts(like) else {
            return self.hash(password, client).await;
        };
        let password = password.0.clone();
        let (cost, salt) = (like.get_cost(), like.get_salt_raw());
        let hash = self
            .run(client, work, move || {
                bcrypt::hash_with_salt(password, cost, salt)
                    .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
            })
            .await??;
        crate::metrics::get().hashed(work);
        Ok(PasswordHash(hash))
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there
    /// is no account, so both failures take the same time. A malformed stored
    /// hash counts as a mismatch.
    pub async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
        client: ClientIp,
    ) -> Result<bool, HashError> {
        let password = password.0.clone();
        let (hash, known) = match hash {
            Some(hash) => (Arc::<str>::from(hash.0.as_str()), true),
            None => (self.dummy_hash.clone(), false),
        };
        let matches = self
            .run(client, "verify", move || {
                bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await?;
        crate::metrics::get().hashed("verify");
        Ok(known && matches)
    }

    /// Whether a hash for `client` would be queued now: a refusal decided
    /// in-process, before the request pays for any Redis or PostgreSQL
    /// round trip (the hash itself takes its place later, and may still be
    /// refused if others took the room meanwhile).
    pub fn admits(&self, client: ClientIp) -> Result<(), HashError> {
        let span = crate::traces::spans::limit("hash_queue_per_ip");
        let refused = if let Some(share) = client.queue_share()
            && lock(&self.per_client).get(&share).copied().unwrap_or(0) >= self.max_per_client
        {
            Some(HashError::ClientBusy)
        } else if self.waiting.load(Ordering::Acquire) >= self.max_waiting {
            Some(HashError::Busy)
        } else {
            None
        };
        // A full queue (503) is no client's limit: it is said as its own.
        let refused_by = refused.as_ref().map(|err| match err {
            HashError::ClientBusy => "hash_queue_per_ip",
            _ => "hash_queue_full",
        });
        crate::traces::spans::limit_decided(&span, refused_by);
        match refused {
            Some(err) => {
                crate::metrics::get().hash_rejected();
                Err(err)
            }
            None => Ok(()),
        }
    }

    /// Runs bcrypt's `work` (`hash` or `verify`, for its span) on the
    /// blocking pool once `client` has its turn: the wait and the work are
    /// spans of the request's trace.
    async fn run<T: Send + 'static>(
        &self,
        client: ClientIp,
        kind: &'static str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        use tracing::Instrument;
        let _place = match client.queue_share() {
            Some(share) => Some(ClientPlace::take(
                &self.per_client,
                share,
                self.max_per_client,
            )?),
            None => None,
        };
        let _queued = QueueSlot::take(&self.waiting, self.max_waiting)?;
        let _turn = self
            .turns
            .take(client.queue_share())
            .instrument(crate::traces::spans::password_wait())
            .await;
        drop(_queued);
        Ok(tokio::task::spawn_blocking(work)
            .instrument(crate::traces::spans::password_hash(kind))
            .await?)
    }
}

/// A well-formed bcrypt hash at `cost` (zero salt, zero digest) that no
/// password matches in practice. Verifying against it costs exactly what a
/// real verification at `cost` costs, without computing a hash up front.
fn dummy_hash(cost: u32) -> Arc<str> {
    format!("$2b${cost:02}${}", ".".repeat(53)).into()
}

/// A client IP's place in the queue, held from arrival to the end of its
/// hash, given back on drop (also when the request is cancelled).
struct ClientPlace<'a> {
    places: &'a Mutex<HashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl<'a> ClientPlace<'a> {
    fn take(
        places: &'a Mutex<HashMap<IpAddr, usize>>,
        ip: IpAddr,
        max: usize,
    ) -> Result<Self, HashError> {
        let mut held = lock(places);
        let count = held.entry(ip).or_insert(0);
        if *count >= max {
            crate::metrics::get().hash_rejected();
            return Err(HashError::ClientBusy);
        }
        *count += 1;
        Ok(Self { places, ip })
    }
}

impl Drop for ClientPlace<'_> {
    fn drop(&mut self) {
        let mut held = lock(self.places);
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// The map's lock; a panic while holding it leaves counts that are still
/// right (each change is one statement).
fn lock(
    places: &Mutex<HashMap<IpAddr, usize>>,
) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
    places
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A place in the wait queue, given back on drop (also when the request is
/// cancelled while waiting).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(waiting: &'a AtomicUsize, max: usize) -> Result<Self, HashError> {
        if waiting.fetch_add(1, Ordering::AcqRel) >= max {
            waiting.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::get().hash_rejected();
            return Err(HashError::Busy);
        }
        crate::metrics::get().hash_waiting().inc();
        Ok(Self(waiting))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::get().hash_waiting().dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_accepts_a_strong_password() {
        assert_eq!(check_policy("Str0ng!pass"), Ok(()));
        assert_eq!(check_policy(&format!("Aa1!{}", "x".repeat(68))), Ok(()));
        assert_eq!(check_policy("Ab١!xxxx"), Ok(()), "any script's digit");
        assert_eq!(
            check_policy("Abé1xxxx"),
            Ok(()),
            "é is special, not a letter"
        );
    }

    #[test]
    fn the_policy_checks_in_the_originals_order() {
        const LEADING: &str = "Password cannot contain leading or trailing spaces";
        const INSIDE: &str = "Password cannot contain whitespace characters";
        const CLASSES: &str = "Password must include at least one lowercase letter, one uppercase letter, one digit, and one special character";
        let cases = [
            ("Sh0rt!", Refusal::TooShort),
            ("Ab1! x", Refusal::TooShort),
            (&*format!("Aa1!{}", "x".repeat(69)), Refusal::TooLong),
            (" Secr3t!pass", Refusal::Rule(LEADING)),
            ("secretpass\t", Refusal::Rule(LEADING)),
            ("\u{a0}Secr3t!pass", Refusal::Rule(LEADING)),
            ("Has space1!A", Refusal::Rule(INSIDE)),
            ("nospace but lower", Refusal::Rule(INSIDE)),
            ("Sep\u{1c}arat0r!", Refusal::Rule(INSIDE)),
            (
                "Nul\0Byte1!A",
                Refusal::Rule("Password cannot contain control characters"),
            ),
            ("NOLOWER1!", Refusal::Rule(CLASSES)),
            ("noupper1!", Refusal::Rule(CLASSES)),
            ("NoDigits!!", Refusal::Rule(CLASSES)),
            ("NoSpecial12", Refusal::Rule(CLASSES)),
            ("ÄÖÜäöü1!", Refusal::Rule(CLASSES)),
        ];
        for (password, refusal) in cases {
            assert_eq!(check_policy(password), Err(refusal), "{password:?}");
        }
    }

    #[test]
    fn the_schemas_pattern_says_what_the_policy_says() {
        let pattern = fancy_regex::Regex::new(PATTERN).unwrap();
        // What the schema says of a password of 8-72 characters and bytes.
        let schema_accepts = |p: &str| pattern.is_match(p).unwrap();
        let mut samples: Vec<String> = [
            "Secr3t!pass",
            "Ab١!xxxx",
            "Abé1xxxx",
            "ÄÖÜäöü1!",
            "NoDigits!!",
            "NoSpecial12",
            "noupper1!",
            "NOLOWER1!",
            " Secr3t!pass",
            "Secr3t!pass ",
            "Secr 3t!pass",
            "Secr3t!\tpass",
            "Sep\u{1c}ar4t!",
            "Nul\0Byte1!A",
            "Del\u{7f}ete1!",
            "Next\u{85}Line1!",
            "No\u{a0}Break1!",
            "Em\u{2003}Space1!",
            "Zero\u{200b}Width1!",
            "Ab1!𝄞𝄞𝄞𝄞",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // And random ones from a mixed alphabet.
        let alphabet: Vec<char> = "aZ9!é١ \t\u{1c}\u{85}\u{a0}\u{2003}\u{200b}𝄞Ä_-"
            .chars()
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            let password: String = (0..8 + (x % 10) as usize)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            samples.push(password);
        }
        for password in &samples {
            if password.chars().count() < MIN_LENGTH || password.len() > MAX_LENGTH {
                continue;
            }
            assert_eq!(
                schema_accepts(password),
                check_policy(password).is_ok(),
                "{password:?}: {:?}",
                check_policy(password)
            );
        }
    }

    #[test]
    fn lengths_count_characters_and_then_bytes() {
        // 72 characters of two bytes each: within the characters, over the bytes.
        let wide = format!("Aa1!{}", "é".repeat(68));
        assert_eq!(wide.chars().count(), 72);
        assert_eq!(check_policy(&wide), Err(Refusal::TooManyBytes));
        // 18 four-byte characters are 72 bytes; one more is too many.
        let ok = format!("Aa1!{}", "𝄞".repeat(17));
        assert!(ok.len() == 72 && check_policy(&ok).is_ok());
        assert_eq!(check_policy(&format!("{ok}𝄞")), Err(Refusal::TooManyBytes));
    }

    #[test]
    fn a_hash_knows_its_cost() {
        let hash = |s: &str| PasswordHash(s.to_owned());
        assert_eq!(
            hash(&bcrypt::hash("Str0ng!pass", 4).unwrap()).cost(),
            Some(4)
        );
        assert_eq!(hash(&dummy_hash(12)).cost(), Some(12));
        for malformed in ["", "x", "$2b$", "$2b$1$", "$2b$ab$x", "plain"] {
            assert_eq!(hash(malformed).cost(), None, "{malformed}");
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        assert_eq!(format!("{:?}", Password::new("Secret1!")), "Password(..)");
        assert_eq!(
            format!("{:?}", PasswordHash("$2b$".into())),
            "PasswordHash(..)"
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Hasher::new(4, 4).unwrap();
        let password = Password::new("Str0ng!pass");
        let anyone = ClientIp::EXEMPT;
        let hash = hasher.hash(&password, anyone).await.unwrap();
        assert!(hasher.verify(&password, Some(&hash), anyone).await.unwrap());
        let wrong = Password::new("Wr0ng!pass");
        assert!(!hasher.verify(&wrong, Some(&hash), anyone).await.unwrap());
        assert!(!hasher.verify(&password, None, anyone).await.unwrap());
    }

    #[test]
    fn the_dummy_hash_is_verified_at_full_cost_and_matches_nothing() {
        // `Ok(false)`, not an error: bcrypt parsed it and ran the whole cost.
        assert!(matches!(
            bcrypt::verify("Str0ng!pass", &dummy_hash(4)),
            Ok(false)
        ));
        assert!(dummy_hash(12).starts_with("$2b$12$"));
        assert!(Hasher::new(3, 4).is_err() && Hasher::new(32, 4).is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn admission_is_decided_in_process_before_any_work() {
        let hasher = Hasher::with_concurrency(10, 1, 100, 1).unwrap();
        let flooder = ClientIp(Some("192.0.2.1".parse().unwrap()));
        let other = ClientIp(Some("192.0.2.2".parse().unwrap()));
        assert!(hasher.admits(flooder).is_ok());
        let password = Password::new("Str0ng!pass");
        let holding = {
            let hasher = hasher.clone();
            let password = password.clone();
            tokio::spawn(async move { hasher.hash(&password, flooder).await })
        };
        // While its one place is held, the flooder is refused, the other not.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while hasher.admits(flooder).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the place was never taken"
            );
            tokio::task::yield_now().await;
        }
        assert!(matches!(hasher.admits(flooder), Err(HashError::ClientBusy)));
        assert!(hasher.admits(other).is_ok());
        holding.await.unwrap().unwrap();
        assert!(hasher.admits(flooder).is_ok());
        let full = Hasher::with_concurrency(4, 1, 0, 4).unwrap();
        assert!(matches!(full.admits(other), Err(HashError::Busy)));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting() {
        let hasher = Hasher::with_concurrency(4, 1, 0, 4).unwrap();
        let result = hasher
            .hash(&Password::new("Str0ng!pass"), ClientIp::EXEMPT)
            .await;
        assert!(matches!(result, Err(HashError::Busy)));
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn one_client_holds_at_most_its_share_of_the_queue() {
        let hasher = Hasher::with_concurrency(8, 1, 100, 2).unwrap();
        let flooder = ClientIp(Some("192.0.2.1".parse().unwrap()));
        let other = ClientIp(Some("192.0.2.2".parse().unwrap()));
        let password = Password::new("Str0ng!pass");
        let results =
            futures_util::future::join_all((0..6).map(|_| hasher.hash(&password, flooder))).await;
        let refused = results
            .iter()
            .filter(|result| matches!(result, Err(HashError::ClientBusy)))
            .count();
        assert_eq!(refused, 4, "two places, six asked at once");
        // The flooder's places are given back; another client was never refused.
        assert!(hasher.hash(&password, flooder).await.is_ok());
        assert!(hasher.hash(&password, other).await.is_ok());
        assert!(lock(&hasher.per_client).is_empty());
    }
}
