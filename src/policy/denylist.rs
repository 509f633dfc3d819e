//! The deny list: passwords known to be breached, checked offline. Built
//! by `activator passwords import` from plain passwords or the breach
//! corpus's `SHA1:COUNT` lines into a filter file; `serve` maps the file
//! read-only at start (`PASSWORD_DENYLIST_FILE`), so every process on a
//! host shares one copy in the page cache and nothing is read per look-up
//! but a few cache lines.
//!
//! The filter holds no password: each entry is the SHA-1 of a password
//! (the corpus's own hash), and the file only fingerprints of it. Two
//! binary fuse filters (Graf & Lemire, 2022; the `xorf` crate, read in
//! place from the mapped file by `BinaryFuse16Ref`/`BinaryFuse8Ref`): a
//! 16-bit one over the SHA-1's first 8 bytes and an 8-bit one over the
//! next 8. A password not in the list passes the first with probability
//! 2^-16 and, independently, the second with 2^-8: a false positive rate
//! of 2^-24 ≈ 6 × 10^-8, under the 10^-5 asked, in about 27 bits (3.4
//! bytes) an entry. A 16-bit filter alone (2.25 bytes) would give 2^-16 ≈
//! 1.5 × 10^-5: over it. No filter of any kind reaches 10^-5 below
//! log2(10^5) ≈ 16.6 bits (2.08 bytes) an entry.
//!
//! The file (all integers little-endian):
//!
//! | offset | bytes | what |
//! | --- | --- | --- |
//! | 0 | 8 | magic `ACTVDENY` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | header length (128) |
//! | 16 | 8 | entries (distinct SHA-1s) |
//! | 24 | 8 | created, Unix seconds |
//! | 32 | 32 | SHA-256 of the whole file with these 32 bytes zero |
//! | 64 | 20 | the 16-bit filter's descriptor (seed, segment length, mask, segment count length) |
//! | 84 | 4 | zero |
//! | 88 | 8 | its fingerprints, in number |
//! | 96 | 20 | the 8-bit filter's descriptor |
//! | 116 | 4 | zero |
//! | 120 | 8 | its fingerprints, in number |
//! | 128 | | the 16-bit fingerprints, then the 8-bit ones |

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;
use xorf::{BinaryFuse8, BinaryFuse8Ref, BinaryFuse16, BinaryFuse16Ref, DmaSerializable};
use xorf::{Filter, FilterRef};

const MAGIC: &[u8; 8] = b"ACTVDENY";
const VERSION: u32 = 1;
const HEADER: usize = 128;
const CHECKSUM: std::ops::Range<usize> = 32..64;
const DESCRIPTOR: usize = 20;

/// A deny-list file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the deny list {path} (PASSWORD_DENYLIST_FILE): {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the deny list {path} (PASSWORD_DENYLIST_FILE) is not usable: {problem}; make it again with `activator passwords import`"
    )]
    Invalid { path: PathBuf, problem: String },
}

/// The two filters' fingerprints and their descriptors, where they are in
/// the mapped file.
struct Layout {
    entries: u64,
    created: i64,
    wide: [u8; DESCRIPTOR],
    wide_range: std::ops::Range<usize>,
    narrow: [u8; DESCRIPTOR],
    narrow_range: std::ops::Range<usize>,
}

/// A deny list mapped from its file.
pub struct DenyList {
    map: memmap2::Mmap,
    layout: Layout,
    path: PathBuf,
}

impl std::fmt::Debug for DenyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenyList")
            .field("path", &self.path)
            .field("entries", &self.layout.entries)
            .finish()
    }
}

/// The two keys of a password's SHA-1: its first and second 8 bytes.
fn keys(sha1: &[u8; 20]) -> (u64, u64) {
    let mut first = [0u8; 8];
    let mut second = [0u8; 8];
    first.copy_from_slice(&sha1[..8]);
    second.copy_from_slice(&sha1[8..16]);
    (u64::from_be_bytes(first), u64::from_be_bytes(second))
}

fn sha1_of(password: &str) -> [u8; 20] {
    sha1_smol::Sha1::from(password.as_bytes()).digest().bytes()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Whether a binary fuse descriptor reads only within `len` fingerprints:
/// `contains` indexes up to the segment count length plus two segments.
fn fits(descriptor: &[u8; DESCRIPTOR], len: usize) -> bool {
    let segment_length = u32_at(descriptor, 8);
    let mask = u32_at(descriptor, 12);
    let count_length = u32_at(descriptor, 16);
    segment_length.is_power_of_two()
        && mask == segment_length - 1
        && (count_length as usize) + 2 * (segment_length as usize) <= len
        && len > 0
}

impl DenyList {
    /// Maps the deny list at `path`, after checking its magic, version,
    /// length and checksum: a file that is missing, truncated, altered or
    /// of another format is an error naming it, never an empty list.
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let invalid = |problem: &str| FileError::Invalid {
            path: path.to_owned(),
            problem: problem.to_owned(),
        };
        let file = File::open(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the file is mapped read-only and replaced only by rename
        // (`import` writes a new file); truncating it in place while
        // mapped is outside what the service supports (docs/OPERATIONS.md).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bytes = &map[..];
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(invalid("it is not a deny list (no ACTVDENY header)"));
        }
        if u32_at(bytes, 8) != VERSION || u32_at(bytes, 12) as usize != HEADER {
            return Err(invalid(&format!(
                "it is of format version {}, this binary reads version {VERSION}",
                u32_at(bytes, 8)
            )));
        }
        if !cfg!(target_endian = "little") {
            return Err(invalid("it is read on little-endian machines only"));
        }
        let wide_len = usize::try_from(u64_at(bytes, 88)).unwrap_or(usize::MAX);
        let narrow_len = usize::try_from(u64_at(bytes, 120)).unwrap_or(usize::MAX);
        let expected = wide_len
            .checked_mul(2)
            .and_then(|wide| wide.checked_add(narrow_len))
            .and_then(|body| body.checked_add(HEADER));
        if expected != Some(bytes.len()) {
            return Err(invalid(&format!(
                "it is {} bytes long, its header says {}",
                bytes.len(),
                expected.map_or_else(|| "more than can be".to_owned(), |n| n.to_string())
            )));
        }
        if checksum(bytes) != bytes[CHECKSUM] {
            return Err(invalid(
                "its checksum does not match: it was altered or cut",
            ));
        }
        let mut wide = [0u8; DESCRIPTOR];
        wide.copy_from_slice(&bytes[64..64 + DESCRIPTOR]);
        let mut narrow = [0u8; DESCRIPTOR];
        narrow.copy_from_slice(&bytes[96..96 + DESCRIPTOR]);
        if !fits(&wide, wide_len) || !fits(&narrow, narrow_len) {
            return Err(invalid(
                "its filters' descriptors do not fit their fingerprints",
            ));
        }
        let wide_range = HEADER..HEADER + 2 * wide_len;
        let layout = Layout {
            entries: u64_at(bytes, 16),
            created: i64::from_le_bytes(bytes[24..32].try_into().unwrap_or_default()),
            wide,
            narrow_range: wide_range.end..bytes.len(),
            wide_range,
            narrow,
        };
        // The map is page-aligned and the header 128 bytes: the 16-bit
        // fingerprints are aligned, as `from_dma` requires.
        if map[layout.wide_range.clone()]
            .as_ptr()
            .align_offset(std::mem::align_of::<u16>())
            != 0
        {
            return Err(invalid("it is mapped at an odd address"));
        }
        Ok(Self {
            map,
            layout,
            path: path.to_owned(),
        })
    }

    /// Whether `password` (as typed, UTF-8) is in the list; a password not
    /// in it is found with probability about 6 × 10^-8.
    pub fn contains(&self, password: &str) -> bool {
        self.contains_sha1(&sha1_of(password))
    }

    /// Whether the password of this SHA-1 is in the list.
    pub fn contains_sha1(&self, sha1: &[u8; 20]) -> bool {
        let (first, second) = keys(sha1);
        let wide =
            BinaryFuse16Ref::from_dma(&self.layout.wide, &self.map[self.layout.wide_range.clone()]);
        if !wide.contains(&first) {
            return false;
        }
        let narrow = BinaryFuse8Ref::from_dma(
            &self.layout.narrow,
            &self.map[self.layout.narrow_range.clone()],
        );
        narrow.contains(&second)
    }

    /// Distinct passwords in the list.
    pub fn entries(&self) -> u64 {
        self.layout.entries
    }

    /// When the list was made.
    pub fn created(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(self.layout.created, 0).unwrap_or_default()
    }

    /// The file's size in bytes: what it holds in memory once read.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The SHA-256 of `file` with its checksum field read as zeros.
fn checksum(file: &[u8]) -> [u8; 32] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(&file[..CHECKSUM.start]);
    hasher.update([0u8; 32]);
    hasher.update(&file[CHECKSUM.end..]);
    hasher.finalize().into()
}

/// How the lines of an import read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The first line decides: 40 hexadecimal digits (and `:COUNT`) is
    /// `sha1`, anything else `plain`.
    Auto,
    /// One password a line, as typed (UTF-8).
    Plain,
    /// `SHA1` or `SHA1:COUNT` a line (the breach corpus's downloadable
    /// form), hexadecimal in either case.
    Sha1,
}

/// What an import read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Lines left out for a count below the minimum.
    pub below_min_count: u64,
    /// Distinct passwords written.
    pub entries: u64,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// Why an import failed: one line, naming the input line where it is one.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {problem}")]
    Line { line: u64, problem: String },
    #[error("the input holds no password")]
    Empty,
    #[error("cannot build the filter: {0}")]
    Filter(&'static str),
}

/// The SHA-1 of a `SHA1[:COUNT]` line and its count (1 without one).
fn parse_sha1_line(line: &[u8]) -> Option<([u8; 20], u64)> {
    let (hex, count) = match line.iter().position(|&b| b == b':') {
        Some(colon) => (&line[..colon], Some(&line[colon + 1..])),
        None => (line, None),
    };
    if hex.len() != 40 {
        return None;
    }
    let mut sha1 = [0u8; 20];
    hex::decode_to_slice(hex, &mut sha1).ok()?;
    let count = match count {
        None => 1,
        Some(digits) => std::str::from_utf8(digits).ok()?.trim().parse().ok()?,
    };
    Some((sha1, count))
}

/// Reads `input`'s lines in `format` (keeping `SHA1:COUNT` lines whose
/// count is at least `min_count`) and writes the filter file to `out`
/// (a new file beside it, renamed into place: a running `serve` keeps the
/// old one it mapped).
pub fn import(
    input: impl BufRead,
    format: Format,
    min_count: u64,
    out: &Path,
) -> Result<Imported, ImportError> {
    let mut input = input;
    let mut wide_keys: Vec<u64> = Vec::new();
    let mut narrow_keys: Vec<u64> = Vec::new();
    let mut line = Vec::with_capacity(128);
    let (mut lines, mut below) = (0u64, 0u64);
    let mut format = format;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        if format == Format::Auto {
            format = if parse_sha1_line(&line).is_some() {
                Format::Sha1
            } else {
                Format::Plain
            };
        }
        let sha1 = match format {
            Format::Sha1 => {
                let Some((sha1, count)) = parse_sha1_line(&line) else {
                    return Err(ImportError::Line {
                        line: lines,
                        problem: "expected 40 hexadecimal digits, optionally :COUNT".into(),
                    });
                };
                if count < min_count {
                    below += 1;
                    continue;
                }
                sha1
            }
            _ => {
                let Ok(password) = std::str::from_utf8(&line) else {
                    return Err(ImportError::Line {
                        line: lines,
                        problem: "not UTF-8".into(),
                    });
                };
                sha1_of(password)
            }
        };
        let (first, second) = keys(&sha1);
        wide_keys.push(first);
        narrow_keys.push(second);
    }
    if wide_keys.is_empty() {
        return Err(ImportError::Empty);
    }
    // Distinct passwords: a repeated line counts once. (Two SHA-1s equal in
    // their first 8 bytes are one key of a filter: both are refused.)
    let mut pairs: Vec<(u64, u64)> = wide_keys
        .iter()
        .copied()
        .zip(narrow_keys.iter().copied())
        .collect();
    drop(narrow_keys);
    pairs.sort_unstable();
    pairs.dedup();
    let entries = pairs.len() as u64;
    wide_keys.clear();
    wide_keys.extend(pairs.iter().map(|pair| pair.0));
    wide_keys.dedup();
    let mut narrow_keys: Vec<u64> = pairs.iter().map(|pair| pair.1).collect();
    drop(pairs);
    narrow_keys.sort_unstable();
    narrow_keys.dedup();
    let wide = BinaryFuse16::try_from(&wide_keys).map_err(ImportError::Filter)?;
    drop(wide_keys);
    let narrow = BinaryFuse8::try_from(&narrow_keys).map_err(ImportError::Filter)?;
    drop(narrow_keys);
    let bytes = write(out, entries, &wide, &narrow)?;
    Ok(Imported {
        lines,
        below_min_count: below,
        entries,
        bytes,
    })
}

/// Writes the file for `wide` and `narrow` to `out`, through a temporary
/// file beside it renamed into place.
fn write(
    out: &Path,
    entries: u64,
    wide: &BinaryFuse16,
    narrow: &BinaryFuse8,
) -> Result<u64, std::io::Error> {
    let mut header = vec![0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(HEADER as u32).to_le_bytes());
    header[16..24].copy_from_slice(&entries.to_le_bytes());
    header[24..32].copy_from_slice(&chrono::Utc::now().timestamp().to_le_bytes());
    wide.dma_copy_descriptor_to(&mut header[64..64 + DESCRIPTOR]);
    header[88..96].copy_from_slice(&(wide.fingerprints.len() as u64).to_le_bytes());
    narrow.dma_copy_descriptor_to(&mut header[96..96 + DESCRIPTOR]);
    header[120..128].copy_from_slice(&(narrow.fingerprints.len() as u64).to_le_bytes());
    let wide_bytes: Vec<u8> = wide
        .fingerprints
        .iter()
        .flat_map(|fingerprint| fingerprint.to_le_bytes())
        .collect();
    let narrow_bytes = narrow.dma_fingerprints();
    let mut hasher = sha2::Sha256::new();
    hasher.update(&header);
    hasher.update(&wide_bytes);
    hasher.update(narrow_bytes);
    let sum: [u8; 32] = hasher.finalize().into();
    header[CHECKSUM].copy_from_slice(&sum);

    let name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "denylist".to_owned());
    let temporary = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::io::BufWriter::new(File::create(&temporary)?);
        file.write_all(&header)?;
        file.write_all(&wide_bytes)?;
        file.write_all(narrow_bytes)?;
        let file = file.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temporary, out)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    Ok((HEADER + wide_bytes.len() + narrow_bytes.len()) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!("activator-denylist-{label}-{}", std::process::id()))
    }

    fn sha1_hex(password: &str) -> String {
        hex::encode_upper(sha1_of(password))
    }

    #[test]
    fn plain_and_sha1_lines_make_a_list_that_finds_them_and_little_else() {
        let out = temp("plain");
        let plain = "Password1!\nletmein\r\n\nletmein\nhunter2\n";
        let imported = import(plain.as_bytes(), Format::Auto, 0, &out).unwrap();
        assert_eq!((imported.lines, imported.entries), (5, 3));
        let list = DenyList::open(&out).unwrap();
        assert!(
            list.contains("Password1!") && list.contains("letmein") && list.contains("hunter2")
        );
        assert!(!list.contains("Secr3t!pass"));

        let corpus: String = (0..20_000)
            .map(|i| format!("{}:{}\n", sha1_hex(&format!("breached-{i}")), i % 7))
            .collect();
        let imported = import(corpus.as_bytes(), Format::Auto, 2, &out).unwrap();
        assert_eq!(imported.lines, 20_000);
        assert!(imported.below_min_count > 5000);
        let list = DenyList::open(&out).unwrap();
        assert_eq!(list.entries(), imported.entries);
        for i in 0..20_000 {
            let found = list.contains(&format!("breached-{i}"));
            if i % 7 >= 2 {
                assert!(found, "breached-{i}");
            }
        }
        let false_positives = (0..200_000)
            .filter(|i| list.contains(&format!("never-breached-{i}")))
            .count();
        assert!(false_positives <= 1, "{false_positives} false positives");
        std::fs::remove_file(&out).unwrap();
    }

    #[test]
    fn a_missing_cut_altered_or_foreign_file_is_refused_naming_it() {
        let out = temp("damaged");
        import("a\nb\nc\n".as_bytes(), Format::Plain, 0, &out).unwrap();
        let whole = std::fs::read(&out).unwrap();
        let named = |err: FileError| {
            let text = err.to_string();
            assert!(
                text.contains(&out.display().to_string())
                    && text.contains("PASSWORD_DENYLIST_FILE"),
                "{text}"
            );
            text
        };
        std::fs::write(&out, &whole[..whole.len() - 1]).unwrap();
        named(DenyList::open(&out).unwrap_err());
        std::fs::write(&out, &whole[..40]).unwrap();
        named(DenyList::open(&out).unwrap_err());
        let mut altered = whole.clone();
        *altered.last_mut().unwrap() ^= 1;
        std::fs::write(&out, &altered).unwrap();
        assert!(named(DenyList::open(&out).unwrap_err()).contains("checksum"));
        std::fs::write(&out, b"123456\npassword\n").unwrap();
        named(DenyList::open(&out).unwrap_err());
        std::fs::remove_file(&out).unwrap();
        named(DenyList::open(&out).unwrap_err());
    }

    #[test]
    fn a_malformed_sha1_line_is_refused_with_its_number() {
        let out = temp("malformed");
        let input = format!("{}:3\nnot a hash\n", sha1_hex("x"));
        let err = import(input.as_bytes(), Format::Auto, 0, &out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: expected 40 hexadecimal digits, optionally :COUNT"
        );
        assert!(matches!(
            import("\n\n".as_bytes(), Format::Auto, 0, &out),
            Err(ImportError::Empty)
        ));
        assert!(!out.exists());
    }
}
