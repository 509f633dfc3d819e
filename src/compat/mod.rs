//! The original service's Python libraries, ported for their answers, so
//! that clients keep seeing byte-identical 422 messages: what each accepts,
//! and the exact sentence of each refusal.
//!
//! - [`pyjson`] (with [`json_bytes`]): CPython 3.12's `json.loads` as
//!   FastAPI runs it on a request body.
//! - The address validation, in the order it runs:
//!
//!   1. [`pydantic`]: pydantic 2.11's `validate_email` (behind `EmailStr`).
//!   2. [`email_validator`]: email-validator 2.3.0's `validate_email`, with
//!      pydantic's options.
//!   3. [`idna`], [`literals`]: the parts of the `idna` 3.x Python package
//!      (IDNA 2008) and of Python's `ipaddress` and `punycode` codec whose
//!      error texts leak into email-validator's messages.
//!
//! Error strings are the library's sentence, i.e. the `reason` that pydantic
//! puts after `value is not a valid email address: `.
//!
//! Unicode data comes from ICU4X (`icu_properties`, `icu_normalizer`, the
//! back end that `idna` 1.x itself uses) and `unicode_names2`. The original
//! ran on Python's `unicodedata` (Unicode 14.0 on Python 3.11) plus the idna
//! package's own tables, so code points assigned after Unicode 14 can be
//! judged differently (Python sees them as unassigned, "unsafe"); this port
//! does not try to emulate the older Unicode version.
//!
//! Known differences (all found by exhaustive/differential comparison with
//! the real libraries, `tests/fixtures/`):
//! * code points assigned in Unicode 15-17 (Python: `Cn`, so "unsafe
//!   characters: U+XXXX", escaped in reprs, "Unknown directionality" in
//!   decoded `xn--` labels), and code points new in Unicode 18 (PVALID in
//!   idna 3.20's tables, unassigned in ICU 17);
//! * six code points whose bidi class changed since Unicode 14 (U+1171E and
//!   some mathematical nablas); they only matter inside right-to-left labels;
//! * `xn--` labels that decode to surrogate code points: Python names the
//!   surrogate ("Codepoint U+DD2E ... not allowed"), the port says
//!   "Invalid A-label" because a Rust string cannot hold a surrogate.
//!
//! Messages that come from the idna package follow idna 3.20; older idna
//! releases word or decide a few cases differently.
//!
//! [`chars`] holds the character classes and Python string helpers they
//! share. The vectors the ports are tested against, the scripts that
//! regenerate them and the pinned library versions are in `tests/fixtures/`
//! (its README says how to regenerate them).

pub mod chars;
pub mod email_validator;
pub mod idna;
pub mod json_bytes;
pub mod literals;
pub mod pydantic;
pub mod pyjson;
