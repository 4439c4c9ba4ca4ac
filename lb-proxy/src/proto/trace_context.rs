//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` fields, read from a client's bytes and written for a backend. Pure: bytes in,
//! typed verdicts out, no allocation but the `tracestate` kept.
//!
//! Reading follows the recommendation's rules for a receiver, strictly: a `traceparent` is
//! refused (and the request starts a trace of its own) when it is sent more than once, when its
//! version is `ff`, when a field has the wrong length or is not lower-case hex, when the trace id
//! or the parent id is all zeros, or when a version 00 value has anything after its flags. A
//! later version is read by its version 00 fields, as the recommendation asks, when what follows
//! them starts with `-`. A `tracestate` is kept only whole: at most [`MAX_TRACESTATE`] bytes and
//! [`MAX_TRACESTATE_MEMBERS`] members, every member a valid `key=value`, no key twice;
//! anything else drops it, as a partial list would misreport what vendors said.

/// The most bytes of `tracestate` passed on (the recommendation asks vendors to propagate at
/// least 512).
pub const MAX_TRACESTATE: usize = 512;
/// The most list members of a `tracestate`.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The length of a version 00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// The sampled bit of the trace flags.
pub const SAMPLED: u8 = 1;

/// A `traceparent`: the trace, the caller's span, its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// The span id of the caller (never all zeros).
    pub parent_id: [u8; 8],
    /// The trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Whether the caller sampled (recorded) the trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The version 00 value: `00-<trace id>-<parent id>-<flags>`, with only the sampled bit of
    /// the flags (the other bits mean nothing in version 00).
    pub fn write(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[..2].copy_from_slice(b"00");
        write_hex(&self.trace_id, &mut out[3..35]);
        write_hex(&self.parent_id, &mut out[36..52]);
        write_hex(&[self.flags & SAMPLED], &mut out[53..55]);
        out
    }
}

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The field was sent more than once.
    #[error("traceparent sent more than once")]
    Duplicate,
    /// Version `ff`, which the recommendation forbids.
    #[error("traceparent version ff")]
    ForbiddenVersion,
    /// Too short, too long for its version, or a separator out of place.
    #[error("traceparent has the wrong shape")]
    Shape,
    /// A field is not lower-case hex.
    #[error("traceparent has a field that is not lower-case hex")]
    NotHex,
    /// The trace id is all zeros.
    #[error("traceparent trace id is all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("traceparent parent id is all zeros")]
    ZeroParentId,
}

/// Reads one `traceparent` value.
///
/// # Errors
/// [`Refused`] says which rule the value breaks.
pub fn parse_traceparent(value: &[u8]) -> Result<TraceParent, Refused> {
    if value.len() < TRACEPARENT_LEN {
        return Err(Refused::Shape);
    }
    let version = hex_byte(&value[..2]).ok_or(Refused::NotHex)?;
    if version == 0xff {
        return Err(Refused::ForbiddenVersion);
    }
    // Version 00 is exactly 55 bytes; a later version may add fields after a `-`.
    let longer_ok = version > 0 && value.get(TRACEPARENT_LEN) == Some(&b'-');
    if value.len() > TRACEPARENT_LEN && !longer_ok {
        return Err(Refused::Shape);
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return Err(Refused::Shape);
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    read_hex(&value[3..35], &mut trace_id).ok_or(Refused::NotHex)?;
    read_hex(&value[36..52], &mut parent_id).ok_or(Refused::NotHex)?;
    let flags = hex_byte(&value[53..55]).ok_or(Refused::NotHex)?;
    if trace_id == [0; 16] {
        return Err(Refused::ZeroTraceId);
    }
    if parent_id == [0; 8] {
        return Err(Refused::ZeroParentId);
    }
    Ok(TraceParent {
        trace_id,
        parent_id,
        flags,
    })
}

/// The request's `traceparent`, from every field line of that name: `Ok(None)` when there is
/// none.
///
/// # Errors
/// More than one line ([`Refused::Duplicate`]: two parents cannot both be the caller), or the
/// one line refused.
pub fn traceparent_of<'a>(
    mut lines: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<TraceParent>, Refused> {
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(Refused::Duplicate);
    }
    parse_traceparent(first).map(Some)
}

/// The request's `tracestate`, from every field line of that name (lines join as one list):
/// the members, trimmed and joined by `,`, when the whole list is valid and at most
/// [`MAX_TRACESTATE`] bytes; `None` when there is none, or it is malformed or too large.
pub fn tracestate_of<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut members = 0usize;
    // Keys seen, as ranges of `out` (at most 32, so a scan is cheap).
    let mut keys: [(u16, u16); MAX_TRACESTATE_MEMBERS] = [(0, 0); MAX_TRACESTATE_MEMBERS];
    for line in lines {
        for member in line.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let (key, value) = split_member(member)?;
            if !is_key(key) || !is_value(value) || members == MAX_TRACESTATE_MEMBERS {
                return None;
            }
            let separator = usize::from(!out.is_empty());
            if out.len() + separator + member.len() > MAX_TRACESTATE {
                return None;
            }
            if keys[..members]
                .iter()
                .any(|&(start, end)| &out[usize::from(start)..usize::from(end)] == key)
            {
                return None;
            }
            if separator == 1 {
                out.push(b',');
            }
            // Both fit in u16: `out` is at most 512 bytes.
            let start = out.len() as u16;
            keys[members] = (start, start + key.len() as u16);
            out.extend_from_slice(member);
            members += 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `value` is a `tracestate` this module would pass on unchanged.
pub fn is_tracestate(value: &[u8]) -> bool {
    tracestate_of(std::iter::once(value)).is_some_and(|kept| kept == value)
}

/// `head` (a request head ending in its blank line) with `traceparent` and, when given,
/// `tracestate` added as its last fields. A head without its blank line is returned as it is.
pub fn stamp_head(head: &[u8], traceparent: &TraceParent, tracestate: Option<&[u8]>) -> Vec<u8> {
    let Some(fields) = head.strip_suffix(b"\r\n") else {
        return head.to_vec();
    };
    if !fields.ends_with(b"\r\n") {
        return head.to_vec();
    }
    let extra = 13 + TRACEPARENT_LEN + 2 + tracestate.map_or(0, |state| 12 + state.len() + 2);
    let mut out = Vec::with_capacity(head.len() + extra);
    out.extend_from_slice(fields);
    out.extend_from_slice(b"traceparent: ");
    out.extend_from_slice(&traceparent.write());
    out.extend_from_slice(b"\r\n");
    if let Some(state) = tracestate {
        out.extend_from_slice(b"tracestate: ");
        out.extend_from_slice(state);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Lower-case hex of `bytes` into `out` (twice as long).
pub fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 15)];
    }
}

/// One lower-case hex digit.
fn digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn read_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

/// Without the optional white space (space and tab) around a list member.
fn trim_ows(mut member: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = member {
        member = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = member {
        member = rest;
    }
    member
}

fn split_member(member: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = member.iter().position(|&b| b == b'=')?;
    Some((&member[..at], &member[at + 1..]))
}

/// `lcalpha / DIGIT / "_" / "-" / "*" / "/"`.
fn key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// A simple key (`lcalpha` then up to 255 key characters) or a multi-tenant one
/// (`tenant@system`: a tenant of 1-241 key characters starting with a letter or digit, a system
/// of 1-14 starting with a letter).
fn is_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key.iter().all(|&b| key_char(b))
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant.iter().all(|&b| key_char(b))
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system.iter().all(|&b| key_char(b))
        }
    }
}

/// 1-256 printable characters other than `,` and `=`, spaces inside but not at the end.
fn is_value(value: &[u8]) -> bool {
    let printable = |b: u8| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=';
    (1..=256).contains(&value.len())
        && value.iter().all(|&b| printable(b))
        && value.last().is_some_and(|&b| b != b' ')
}

#[cfg(test)]
mod tests;
