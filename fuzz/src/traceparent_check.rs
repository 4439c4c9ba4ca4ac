//! W3C Trace Context from a client's bytes: each input line is a `traceparent` field value,
//! except lines starting with `s:`, which are `tracestate` values. Any bytes give a verdict,
//! never a panic; a parent that reads has non-zero ids, and written again (version 00, the
//! sampled bit) reads back the same; a kept `tracestate` is at most 512 bytes of valid members,
//! no key twice, and is kept unchanged when read again; a head stamped with them parses, as our
//! codec reads requests, with exactly one `traceparent` (the one written) and the state.

use lb_proxy::proto::h1::request::{Limits, parse};
use lb_proxy::proto::trace_context::{
    MAX_TRACESTATE, MAX_TRACESTATE_MEMBERS, SAMPLED, TraceParent, is_tracestate, stamp_head,
    traceparent_of, tracestate_of,
};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let parents = lines
        .iter()
        .copied()
        .filter(|line| !line.starts_with(b"s:"));
    let states = (lines.iter()).filter_map(|line| line.strip_prefix(b"s:"));
    let parent = traceparent_of(parents.clone());
    if parents.count() > 1 {
        assert!(parent.is_err(), "two traceparents read as one");
    }
    let state = tracestate_of(states);
    if let Some(state) = &state {
        assert!(state.len() <= MAX_TRACESTATE);
        assert!(
            is_tracestate(state),
            "a kept tracestate reads differently again"
        );
        let members: Vec<&[u8]> = state.split(|&b| b == b',').collect();
        assert!(members.len() <= MAX_TRACESTATE_MEMBERS);
        let mut keys: Vec<&[u8]> = (members.iter())
            .map(|member| member.split(|&b| b == b'=').next().unwrap_or_default())
            .collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "a key twice");
        assert!(state.iter().all(|&b| (0x20..=0x7e).contains(&b)));
    }
    let Ok(Some(parent)) = parent else {
        return;
    };
    assert_ne!(parent.trace_id, [0; 16]);
    assert_ne!(parent.parent_id, [0; 8]);
    let written = parent.write();
    let again = traceparent_of(std::iter::once(&written[..])).expect("written reads");
    let sent = TraceParent {
        flags: parent.flags & SAMPLED,
        ..parent
    };
    assert_eq!(again, Some(sent));
    let head = stamp_head(
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        &parent,
        state.as_deref(),
    );
    let limits = Limits {
        max_head_bytes: usize::MAX,
        max_target_bytes: usize::MAX,
    };
    let parsed = parse(&head, &limits)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&head)))
        .expect("a complete head");
    assert_eq!(parsed.length, head.len());
    let fields = &parsed.parts.headers;
    let traceparents: Vec<_> = fields.get_all("traceparent").iter().collect();
    assert_eq!(traceparents.len(), 1);
    assert_eq!(traceparents[0].as_bytes(), &written[..]);
    let states: Vec<_> = fields.get_all("tracestate").iter().collect();
    match &state {
        Some(state) => assert_eq!(
            states.iter().map(|v| v.as_bytes()).collect::<Vec<_>>(),
            [&state[..]]
        ),
        None => assert!(states.is_empty()),
    }
}
