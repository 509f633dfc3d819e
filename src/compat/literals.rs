//! email-validator's domain literals (`[192.0.2.1]`, `[IPv6:...]`) and the
//! messages of Python's `ipaddress` that leak into them.

use super::chars::{Res, chars_to_string, py_repr, refuse_chars};

/// email-validator's `validate_email_domain_literal`. On success the caller
/// still rejects the literal, since pydantic does not allow them.
pub(super) fn validate_domain_literal(literal: &[char]) -> Res<()> {
    let s = chars_to_string(literal);
    // `re.match(r"^[0-9\.]+$", ...)`: `$` also matches before a final "\n".
    let body = s.strip_suffix('\n').unwrap_or(&s);
    if !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return parse_ipv4(&s).map(|_| ()).map_err(|e| {
            format!(
                "The address in brackets after the @-sign is not valid: It is not an IPv4 address ({e}) or is missing an address literal tag."
            )
        });
    }
    if let Some(v6) = s.strip_prefix("IPv6:") {
        return parse_ipv6_address(v6).map_err(|e| {
            format!("The IPv6 address in brackets after the @-sign is not valid ({e}).")
        });
    }
    if !s.contains(':') {
        return Err("The part after the @-sign in brackets is not an IPv4 address and has no address literal tag.".into());
    }
    // DOMAIN_LITERAL_CHARS is `[\u0021-\u00FA\u005E-\u007E]`, i.e. U+0021-U+00FA.
    refuse_chars(
        literal,
        |c| !('\u{21}'..='\u{FA}').contains(&c),
        "The part after the @-sign contains invalid characters in brackets",
    )?;
    Err("The part after the @-sign contains an invalid address literal tag in brackets.".into())
}

/// `ipaddress.IPv4Address(str)` error messages (Python 3.11).
pub(super) fn parse_ipv4(ip: &str) -> Res<u32> {
    if ip.contains('/') {
        return Err(format!("Unexpected '/' in {}", py_repr(ip)));
    }
    if ip.is_empty() {
        return Err("Address cannot be empty".into());
    }
    let octets: Vec<&str> = ip.split('.').collect();
    if octets.len() != 4 {
        return Err(format!("Expected 4 octets in {}", py_repr(ip)));
    }
    let mut value: u32 = 0;
    for octet in octets {
        let n = parse_octet(octet).map_err(|e| format!("{e} in {}", py_repr(ip)))?;
        value = (value << 8) | n;
    }
    Ok(value)
}

/// `IPv4Address._parse_octet`.
pub(super) fn parse_octet(octet: &str) -> Res<u32> {
    if octet.is_empty() {
        return Err("Empty octet not permitted".into());
    }
    if !octet.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "Only decimal digits permitted in {}",
            py_repr(octet)
        ));
    }
    if octet.len() > 3 {
        return Err(format!(
            "At most 3 characters permitted in {}",
            py_repr(octet)
        ));
    }
    if octet != "0" && octet.starts_with('0') {
        return Err(format!(
            "Leading zeros are not permitted in {}",
            py_repr(octet)
        ));
    }
    let n: u32 = octet
        .parse()
        .map_err(|_| format!("Only decimal digits permitted in {}", py_repr(octet)))?;
    if n > 255 {
        return Err(format!("Octet {n} (> 255) not permitted"));
    }
    Ok(n)
}

/// `ipaddress.IPv6Address(str)`: the `/` check, scope id, then parsing.
pub(super) fn parse_ipv6_address(address: &str) -> Res<()> {
    if address.contains('/') {
        return Err(format!("Unexpected '/' in {}", py_repr(address)));
    }
    let addr = match address.split_once('%') {
        Some((addr, scope)) => {
            if scope.is_empty() || scope.contains('%') {
                return Err(format!("Invalid IPv6 address: \"{}\"", py_repr(address)));
            }
            addr
        }
        None => address,
    };
    parse_ipv6(addr)
}

/// `IPv6Address._ip_int_from_string` (messages only; the value is unused).
pub(super) fn parse_ipv6(ip: &str) -> Res<()> {
    const HEXTET_COUNT: usize = 8;
    if ip.is_empty() {
        return Err("Address cannot be empty".into());
    }
    let mut parts: Vec<String> = ip.split(':').map(str::to_owned).collect();
    if parts.len() < 3 {
        return Err(format!("At least 3 parts expected in {}", py_repr(ip)));
    }
    if parts.last().is_some_and(|p| p.contains('.')) {
        let last = parts.pop().unwrap_or_default();
        let v4 = parse_ipv4(&last).map_err(|e| format!("{e} in {}", py_repr(ip)))?;
        parts.push(format!("{:x}", (v4 >> 16) & 0xFFFF));
        parts.push(format!("{:x}", v4 & 0xFFFF));
    }
    if parts.len() > HEXTET_COUNT + 1 {
        return Err(format!(
            "At most {} colons permitted in {}",
            HEXTET_COUNT,
            py_repr(ip)
        ));
    }
    let mut skip_index = None;
    for (i, part) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
        if part.is_empty() {
            if skip_index.is_some() {
                return Err(format!("At most one '::' permitted in {}", py_repr(ip)));
            }
            skip_index = Some(i);
        }
    }
    let first_empty = parts.first().is_some_and(String::is_empty);
    let last_empty = parts.last().is_some_and(String::is_empty);
    let (parts_hi, parts_lo) = if let Some(skip) = skip_index {
        let mut hi = skip;
        let mut lo = parts.len() - skip - 1;
        if first_empty {
            hi -= 1;
            if hi != 0 {
                return Err(format!(
                    "Leading ':' only permitted as part of '::' in {}",
                    py_repr(ip)
                ));
            }
        }
        if last_empty {
            lo -= 1;
            if lo != 0 {
                return Err(format!(
                    "Trailing ':' only permitted as part of '::' in {}",
                    py_repr(ip)
                ));
            }
        }
        if HEXTET_COUNT < hi + lo + 1 {
            return Err(format!(
                "Expected at most {} other parts with '::' in {}",
                HEXTET_COUNT - 1,
                py_repr(ip)
            ));
        }
        (hi, lo)
    } else {
        if parts.len() != HEXTET_COUNT {
            return Err(format!(
                "Exactly {} parts expected without '::' in {}",
                HEXTET_COUNT,
                py_repr(ip)
            ));
        }
        if first_empty {
            return Err(format!(
                "Leading ':' only permitted as part of '::' in {}",
                py_repr(ip)
            ));
        }
        if last_empty {
            return Err(format!(
                "Trailing ':' only permitted as part of '::' in {}",
                py_repr(ip)
            ));
        }
        (parts.len(), 0)
    };
    let n = parts.len();
    for part in parts[..parts_hi].iter().chain(parts[n - parts_lo..].iter()) {
        if !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "Only hex digits permitted in {} in {}",
                py_repr(part),
                py_repr(ip)
            ));
        }
        if part.chars().count() > 4 {
            return Err(format!(
                "At most 4 characters permitted in {} in {}",
                py_repr(part),
                py_repr(ip)
            ));
        }
    }
    Ok(())
}
