//! Python's `json.loads`, as FastAPI/Starlette run it on a request body, ported
//! for its *answers*: which documents it accepts, and for those it rejects, the
//! exact `JSONDecodeError.msg` and `pos` (a character offset, not a byte offset).
//!
//! Source of truth: CPython 3.12 `Lib/json/__init__.py` (`loads`,
//! `detect_encoding`), `Lib/json/decoder.py` (`JSONDecoder.decode`) and the C
//! accelerator `Modules/_json.c` (`scan_once_unicode`, `scanstring_unicode`,
//! `_parse_object_unicode`, `_parse_array_unicode`, `_match_number_unicode`),
//! which `json.loads` uses. Where the pure-Python `scanner.py`/`py_scanstring`
//! differ, the C code wins: the C messages are `Invalid control character at`
//! and `Invalid \escape` (the Python fallbacks add `{0!r}`), and `\uXXXX` is
//! read strictly as 4 hex digits. Python 3.13 changed trailing commas to
//! `Illegal trailing comma before end of object/array`; this file is 3.12.
//!
//! How FastAPI 0.118 maps the outcomes (`fastapi/routing.py`, request handler):
//! * [`Error::Decode`]: 422 `{"detail":[{"type":"json_invalid","loc":["body",pos],
//!   "msg":"JSON decode error","input":{},"ctx":{"error":msg}}]}`.
//! * every other [`Error`]: 400 `{"detail":"There was an error parsing the body"}`.
//!
//! FastAPI calls this only for a non-empty body whose Content-Type is absent,
//! empty, or `application/json` / `application/*+json` (`api::request`);
//! an empty body is "no body" (`input: null`) and never reaches the parser.
//!
//! Values that Python accepts but `serde_json::Value` cannot hold are reported
//! in [`Parsed::quirks`] (see [`QuirkKind`]); the caller decides what to do
//! with them (the original answered 500 whenever a 422 had to echo a
//! NaN/Infinity or a lone surrogate, and echoed big integers exactly).
//! Object key order follows Python's dict (first insertion; a duplicate key
//! keeps its first place and takes the last value) only with serde_json's
//! `preserve_order` feature; without it keys come out sorted. Two keys that
//! differ only in their lone surrogates collide here (both become U+FFFD).
//!
//! The parser is iterative (no recursion, so no stack overflow at any depth),
//! works on code points, and cannot panic: `unwrap`, `expect`, `panic!` and
//! slice indexing are denied below; index arithmetic adds small constants to
//! positions bounded by the input length.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{Map, Number, Value};

pub use super::json_bytes::NotText;
use super::json_bytes::decode_code_points;

/// Python's `json.JSONDecodeError`: its message (no position suffix) and
/// character offset (code points of the decoded text, 0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub msg: &'static str,
    pub pos: usize,
}

/// Why `json.loads` raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `json.JSONDecodeError` — FastAPI: 422 `json_invalid`.
    Decode(DecodeError),
    /// `UnicodeDecodeError` (bytes input only) — FastAPI: 400.
    NotText,
    /// `RecursionError`: arrays/objects nested deeper than [`MAX_DEPTH`] — FastAPI: 400.
    TooDeep,
    /// `ValueError`: an integer literal of more than [`INT_MAX_STR_DIGITS`]
    /// digits (Python 3.11+'s int/str conversion limit) — FastAPI: 400.
    IntTooLong,
}

impl Error {
    /// The `JSONDecodeError`, if that is what Python raised.
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            Error::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NotText> for Error {
    fn from(_: NotText) -> Self {
        Error::NotText
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (char {})", self.msg, self.pos)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Decode(e) => e.fmt(f),
            Error::NotText => f.write_str("body is not text in its detected encoding"),
            Error::TooDeep => f.write_str("JSON nested too deeply"),
            Error::IntTooLong => f.write_str("integer literal has too many digits"),
        }
    }
}

impl std::error::Error for Error {}

/// Deepest nesting of arrays/objects that FastAPI's `request.json()` decodes.
/// CPython 3.12 counts C-level recursion (limit 1500) from wherever the call
/// stands, so this depends on the call stack. Measured with FastAPI 0.118 under
/// uvicorn 0.54 (h11 and httptools alike): 1486 nested levels decode, 1487
/// raise `RecursionError` (in-process via httpx's ASGI transport: 1493/1494;
/// plain `json.loads` at top level: 1497/1498). Note the original already
/// answered 500 (not 422) from about 970 levels, when `jsonable_encoder`
/// recursed while echoing such a value in a 422.
pub const MAX_DEPTH: usize = 1486;

/// `sys.get_int_max_str_digits()` default (Python 3.11+): an integer literal
/// with more digits than this raises `ValueError`.
pub const INT_MAX_STR_DIGITS: usize = 4300;

/// A value Python produced that `serde_json::Value` holds only approximately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirk {
    /// RFC 6901 JSON Pointer of the value (or, for a key, of its member).
    pub pointer: String,
    pub kind: QuirkKind,
    /// For a string value's [`QuirkKind::LoneSurrogate`], the surrogates it
    /// held, in order; otherwise empty.
    pub surrogates: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuirkKind {
    /// `NaN` literal; stored as `Value::Null`.
    NaN,
    /// `Infinity`, or a float literal that overflows (`1e400`); stored as `Value::Null`.
    Infinity,
    /// `-Infinity`, or a float literal that overflows negatively; stored as `Value::Null`.
    NegInfinity,
    /// An integer outside i64/u64: Python keeps it exact; stored as the nearest
    /// f64 (or `Value::Null` beyond f64's range, where Python's `float()` fails).
    BigInt,
    /// A string value (or a key) held one or more unpaired UTF-16 surrogates
    /// (from `\ud800` escapes, or from bytes decoded with `surrogatepass`);
    /// each is stored as U+FFFD. Python keeps them; encoding them back to
    /// UTF-8 (as FastAPI does when echoing `input`) fails with a 500.
    LoneSurrogate,
}

/// A successfully decoded document.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub value: Value,
    /// In document order; values later replaced by a duplicate key are dropped.
    pub quirks: Vec<Quirk>,
}

/// `json.loads(body)` for a `bytes` body — what Starlette's `Request.json()`
/// does (`json.loads(await self.body())`): detect the encoding, decode with
/// `surrogatepass`, then parse. A UTF-8 BOM is skipped here (`utf-8-sig`).
pub fn loads(body: &[u8]) -> Result<Parsed, Error> {
    let cps = decode_code_points(body)?;
    parse_code_points(&cps)
}

/// `json.loads(text)` for a `str`: like [`loads`] without the byte decoding,
/// and a leading U+FEFF is an error here (`Unexpected UTF-8 BOM (decode using
/// utf-8-sig)` at 0), as in Python.
pub fn parse(text: &str) -> Result<Parsed, Error> {
    if text.starts_with('\u{feff}') {
        return Err(Error::Decode(DecodeError {
            msg: "Unexpected UTF-8 BOM (decode using utf-8-sig)",
            pos: 0,
        }));
    }
    let cps: Vec<u32> = text.chars().map(u32::from).collect();
    parse_code_points(&cps)
}

/// Python's `bytes.decode(json.detect_encoding(body), 'surrogatepass')`.
/// Unpaired surrogates (which Python keeps) become U+FFFD, one for one, so
/// character offsets into the result equal Python's.
pub fn decode_body(body: &[u8]) -> Result<String, NotText> {
    let cps = decode_code_points(body)?;
    Ok(cps
        .iter()
        .map(|&c| char::from_u32(c).unwrap_or('\u{fffd}'))
        .collect())
}

// ---------------------------------------------------------------- the scanner

const QUOTE: u32 = b'"' as u32;
const BACKSLASH: u32 = b'\\' as u32;

fn is_ws(c: u32) -> bool {
    c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d
}

fn is_digit(c: Option<u32>) -> bool {
    matches!(c, Some(d) if (0x30..=0x39).contains(&d))
}

fn derr(msg: &'static str, pos: usize) -> Error {
    Error::Decode(DecodeError { msg, pos })
}

/// A JSON Pointer step.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn pointer(path: &[Step]) -> String {
    let mut p = String::new();
    for s in path {
        p.push('/');
        match s {
            Step::Key(k) => p.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => p.push_str(&i.to_string()),
        }
    }
    p
}

enum Frame {
    Array(Vec<Value>),
    /// The object so far, the key whose value is being read, whether that key
    /// held a lone surrogate, and how many quirks were recorded before its value.
    Object(Map<String, Value>, String, bool, usize),
}

struct Scanner<'a> {
    s: &'a [u32],
    quirks: Vec<Quirk>,
    path: Vec<Step>,
}

impl<'a> Scanner<'a> {
    fn at(&self, i: usize) -> Option<u32> {
        self.s.get(i).copied()
    }

    fn is(&self, i: usize, c: u8) -> bool {
        self.at(i) == Some(u32::from(c))
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while matches!(self.at(i), Some(c) if is_ws(c)) {
            i += 1;
        }
        i
    }

    fn matches_lit(&self, i: usize, lit: &str) -> bool {
        lit.bytes().enumerate().all(|(k, b)| self.is(i + k, b))
    }

    fn quirk(&mut self, kind: QuirkKind, surrogates: Vec<u16>) {
        let p = pointer(&self.path);
        self.quirks.push(Quirk {
            pointer: p,
            kind,
            surrogates,
        });
    }

    /// `scanstring_unicode`: `end` is the index just after the opening quote.
    /// Returns the string, the index after the closing quote, and the lone
    /// surrogates seen (each stored as U+FFFD).
    fn scanstring(&self, mut end: usize) -> Result<(String, usize, Vec<u16>), Error> {
        let s = self.s;
        let len = s.len();
        let begin = end.saturating_sub(1);
        let mut out = String::new();
        let mut lone = Vec::new();
        let mut push = |c: u32, out: &mut String| match char::from_u32(c) {
            Some(ch) => out.push(ch),
            None => {
                lone.push(u16::try_from(c).unwrap_or(u16::MAX));
                out.push('\u{fffd}');
            }
        };
        loop {
            // Find the end of the string or the next escape.
            let mut next = end;
            let mut c = 0u32;
            while let Some(&d) = s.get(next) {
                if d == QUOTE || d == BACKSLASH {
                    c = d;
                    break;
                }
                if d <= 0x1f {
                    return Err(derr("Invalid control character at", next));
                }
                next += 1;
            }
            if c != QUOTE && c != BACKSLASH {
                return Err(derr("Unterminated string starting at", begin));
            }
            for &d in s.get(end..next).unwrap_or(&[]) {
                push(d, &mut out);
            }
            next += 1;
            if c == QUOTE {
                end = next;
                break;
            }
            if next == len {
                return Err(derr("Unterminated string starting at", begin));
            }
            let e = self.at(next).unwrap_or(0);
            let ch: u32;
            if e != u32::from(b'u') {
                end = next + 1;
                ch = match char::from_u32(e) {
                    Some('"') => 0x22,
                    Some('\\') => 0x5c,
                    Some('/') => 0x2f,
                    Some('b') => 0x08,
                    Some('f') => 0x0c,
                    Some('n') => 0x0a,
                    Some('r') => 0x0d,
                    Some('t') => 0x09,
                    _ => return Err(derr("Invalid \\escape", end.saturating_sub(2))),
                };
            } else {
                next += 1;
                end = next + 4;
                if end >= len {
                    return Err(derr("Invalid \\uXXXX escape", next.saturating_sub(1)));
                }
                let mut v = self
                    .hex4(next)
                    .ok_or_else(|| derr("Invalid \\uXXXX escape", end.saturating_sub(5)))?;
                next = end;
                if (0xd800..=0xdbff).contains(&v)
                    && end + 6 < len
                    && self.at(next) == Some(BACKSLASH)
                    && self.is(next + 1, b'u')
                {
                    end += 6;
                    let v2 = self
                        .hex4(next + 2)
                        .ok_or_else(|| derr("Invalid \\uXXXX escape", end.saturating_sub(5)))?;
                    if (0xdc00..=0xdfff).contains(&v2) {
                        v = 0x10000 + (((v - 0xd800) << 10) | (v2 - 0xdc00));
                    } else {
                        end -= 6;
                    }
                }
                ch = v;
            }
            push(ch, &mut out);
        }
        Ok((out, end, lone))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0u32;
        for k in 0..4 {
            let d = char::from_u32(self.at(at + k)?)?.to_digit(16)?;
            v = (v << 4) | d;
        }
        Some(v)
    }

    /// `_match_number_unicode`. `Ok(None)` is Python's `StopIteration(start)`.
    fn number(&mut self, start: usize) -> Result<Option<(Value, usize)>, Error> {
        let len = self.s.len();
        let Some(end_idx) = len.checked_sub(1) else {
            return Ok(None);
        };
        let mut idx = start;
        let mut is_float = false;
        if self.is(idx, b'-') {
            idx += 1;
            if idx > end_idx {
                return Ok(None);
            }
        }
        match self.at(idx) {
            Some(c) if (0x31..=0x39).contains(&c) => {
                idx += 1;
                while idx <= end_idx && is_digit(self.at(idx)) {
                    idx += 1;
                }
            }
            Some(0x30) => idx += 1,
            _ => return Ok(None),
        }
        if idx < end_idx && self.is(idx, b'.') && is_digit(self.at(idx + 1)) {
            is_float = true;
            idx += 2;
            while idx <= end_idx && is_digit(self.at(idx)) {
                idx += 1;
            }
        }
        if idx < end_idx && (self.is(idx, b'e') || self.is(idx, b'E')) {
            let e_start = idx;
            idx += 1;
            if idx < end_idx && (self.is(idx, b'-') || self.is(idx, b'+')) {
                idx += 1;
            }
            while idx <= end_idx && is_digit(self.at(idx)) {
                idx += 1;
            }
            if is_digit(idx.checked_sub(1).and_then(|i| self.at(i))) {
                is_float = true;
            } else {
                idx = e_start;
            }
        }
        let text: String = self
            .s
            .get(start..idx)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&c| char::from_u32(c))
            .collect();
        let value = if is_float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Number::from_f64(f).map_or(Value::Null, Value::Number),
                Ok(f) => {
                    let kind = if f.is_nan() {
                        QuirkKind::NaN
                    } else if f > 0.0 {
                        QuirkKind::Infinity
                    } else {
                        QuirkKind::NegInfinity
                    };
                    self.quirk(kind, Vec::new());
                    Value::Null
                }
                Err(_) => return Ok(None),
            }
        } else {
            let digits = text.strip_prefix('-').unwrap_or(&text).len();
            if digits > INT_MAX_STR_DIGITS {
                return Err(Error::IntTooLong);
            }
            if let Ok(i) = text.parse::<i64>() {
                Value::Number(Number::from(i))
            } else if let Ok(u) = text.parse::<u64>() {
                Value::Number(Number::from(u))
            } else {
                self.quirk(QuirkKind::BigInt, Vec::new());
                text.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        };
        Ok(Some((value, idx)))
    }

    fn constant(&mut self, kind: QuirkKind, next: usize) -> Result<Term, Error> {
        self.quirk(kind, Vec::new());
        Ok(Term::Value(Value::Null, next))
    }

    /// `scan_once_unicode` up to the point where a container would recurse:
    /// either a complete scalar, or an opened container.
    fn scan_once(&mut self, idx: usize, depth: usize) -> Result<Term, Error> {
        let len = self.s.len();
        let Some(c) = self.at(idx) else {
            return Err(derr("Expecting value", idx));
        };
        match char::from_u32(c) {
            Some('"') => {
                let (st, next, lone) = self.scanstring(idx + 1)?;
                if !lone.is_empty() {
                    self.quirk(QuirkKind::LoneSurrogate, lone);
                }
                return Ok(Term::Value(Value::String(st), next));
            }
            Some('{') | Some('[') => {
                if depth >= MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                return Ok(if c == u32::from(b'{') {
                    Term::OpenObject(idx + 1)
                } else {
                    Term::OpenArray(idx + 1)
                });
            }
            Some('n') if idx + 3 < len && self.matches_lit(idx, "null") => {
                return Ok(Term::Value(Value::Null, idx + 4));
            }
            Some('t') if idx + 3 < len && self.matches_lit(idx, "true") => {
                return Ok(Term::Value(Value::Bool(true), idx + 4));
            }
            Some('f') if idx + 4 < len && self.matches_lit(idx, "false") => {
                return Ok(Term::Value(Value::Bool(false), idx + 5));
            }
            Some('N') if idx + 2 < len && self.matches_lit(idx, "NaN") => {
                return self.constant(QuirkKind::NaN, idx + 3);
            }
            Some('I') if idx + 7 < len && self.matches_lit(idx, "Infinity") => {
                return self.constant(QuirkKind::Infinity, idx + 8);
            }
            Some('-') if idx + 8 < len && self.matches_lit(idx, "-Infinity") => {
                return self.constant(QuirkKind::NegInfinity, idx + 9);
            }
            _ => {}
        }
        match self.number(idx)? {
            Some((v, next)) => Ok(Term::Value(v, next)),
            None => Err(derr("Expecting value", idx)),
        }
    }

    /// After `{` (and whitespace), or after `,` (and whitespace): read a key
    /// and the `:`; returns the index where the value starts.
    fn object_key(&self, idx: usize) -> Result<(String, bool, usize), Error> {
        if !self.is(idx, b'"') {
            return Err(derr(
                "Expecting property name enclosed in double quotes",
                idx,
            ));
        }
        let (key, next, lone) = self.scanstring(idx + 1)?;
        let lone = !lone.is_empty();
        let idx = self.skip_ws(next);
        if !self.is(idx, b':') {
            return Err(derr("Expecting ':' delimiter", idx));
        }
        Ok((key, lone, self.skip_ws(idx + 1)))
    }

    fn run(&mut self) -> Result<Value, Error> {
        let start = self.skip_ws(0);
        let mut stack: Vec<Frame> = Vec::new();
        let mut idx = start;
        loop {
            // Read one term at idx.
            let (mut value, mut next) = match self.scan_once(idx, stack.len())? {
                Term::Value(v, n) => (v, n),
                Term::OpenArray(i) => {
                    let i = self.skip_ws(i);
                    if self.is(i, b']') {
                        (Value::Array(Vec::new()), i + 1)
                    } else {
                        stack.push(Frame::Array(Vec::new()));
                        self.path.push(Step::Index(0));
                        idx = i;
                        continue;
                    }
                }
                Term::OpenObject(i) => {
                    let i = self.skip_ws(i);
                    if self.is(i, b'}') {
                        (Value::Object(Map::new()), i + 1)
                    } else {
                        let (key, lone, vi) = self.object_key(i)?;
                        self.path.push(Step::Key(key.clone()));
                        stack.push(Frame::Object(Map::new(), key, lone, self.quirks.len()));
                        idx = vi;
                        continue;
                    }
                }
            };
            // Hand the finished term to its container; close containers that end here.
            loop {
                let Some(frame) = stack.last_mut() else {
                    let end = self.skip_ws(next);
                    if end != self.s.len() {
                        return Err(derr("Extra data", end));
                    }
                    return Ok(value);
                };
                let i = self.skip_ws(next);
                match frame {
                    Frame::Array(items) => {
                        items.push(value);
                        let count = items.len();
                        if self.is(i, b']') {
                            let items = match stack.pop() {
                                Some(Frame::Array(items)) => items,
                                _ => Vec::new(),
                            };
                            self.path.pop();
                            value = Value::Array(items);
                            next = i + 1;
                            continue;
                        }
                        if !self.is(i, b',') {
                            return Err(derr("Expecting ',' delimiter", i));
                        }
                        if let Some(last) = self.path.last_mut() {
                            *last = Step::Index(count);
                        }
                        idx = self.skip_ws(i + 1);
                        break;
                    }
                    Frame::Object(map, key, lone, mark) => {
                        let key = std::mem::take(key);
                        if map.contains_key(&key) {
                            // Python: the later value replaces the earlier one in place;
                            // forget the quirks of the earlier value (recorded before `mark`).
                            let prefix = pointer(&self.path);
                            let mark = *mark;
                            let mut n = 0usize;
                            self.quirks.retain(|q| {
                                n += 1;
                                n > mark
                                    || !(q.pointer == prefix
                                        || q.pointer
                                            .strip_prefix(prefix.as_str())
                                            .is_some_and(|r| r.starts_with('/')))
                            });
                        }
                        if *lone {
                            let p = pointer(&self.path);
                            self.quirks.push(Quirk {
                                pointer: p,
                                kind: QuirkKind::LoneSurrogate,
                                surrogates: Vec::new(),
                            });
                        }
                        map.insert(key, value);
                        if self.is(i, b'}') {
                            let map = match stack.pop() {
                                Some(Frame::Object(map, _, _, _)) => map,
                                _ => Map::new(),
                            };
                            self.path.pop();
                            value = Value::Object(map);
                            next = i + 1;
                            continue;
                        }
                        if !self.is(i, b',') {
                            return Err(derr("Expecting ',' delimiter", i));
                        }
                        let (k, l, vi) = self.object_key(self.skip_ws(i + 1))?;
                        if let Some(last) = self.path.last_mut() {
                            *last = Step::Key(k.clone());
                        }
                        let m = self.quirks.len();
                        if let Some(Frame::Object(_, key, lone, mark)) = stack.last_mut() {
                            *key = k;
                            *lone = l;
                            *mark = m;
                        }
                        idx = vi;
                        break;
                    }
                }
            }
        }
    }
}

enum Term {
    Value(Value, usize),
    OpenArray(usize),
    OpenObject(usize),
}

fn parse_code_points(s: &[u32]) -> Result<Parsed, Error> {
    let mut sc = Scanner {
        s,
        quirks: Vec::new(),
        path: Vec::new(),
    };
    let value = sc.run()?;
    Ok(Parsed {
        value,
        quirks: sc.quirks,
    })
}
