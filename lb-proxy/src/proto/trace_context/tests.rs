use proptest::prelude::*;

use super::*;

const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[test]
fn the_recommendations_example_reads_and_writes_back() {
    let parent = parse_traceparent(GOOD.as_bytes()).unwrap();
    assert_eq!(parent.trace_id[0], 0x0a);
    assert_eq!(parent.parent_id[7], 0x31);
    assert!(parent.sampled());
    assert_eq!(&parent.write(), GOOD.as_bytes());
}

#[test]
fn every_invalid_value_is_refused_by_its_rule() {
    let cases: [(&str, Refused); 12] = [
        ("", Refused::Shape),
        (&GOOD[..54], Refused::Shape),
        (
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            Refused::ForbiddenVersion,
        ),
        (
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            Refused::NotHex,
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
            Refused::NotHex,
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0G",
            Refused::NotHex,
        ),
        (
            "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            Refused::NotHex,
        ),
        (
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            Refused::ZeroTraceId,
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            Refused::ZeroParentId,
        ),
        (
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            Refused::Shape,
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            Refused::Shape,
        ),
        (
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
            Refused::Shape,
        ),
    ];
    for (value, refused) in cases {
        assert_eq!(
            parse_traceparent(value.as_bytes()),
            Err(refused),
            "{value:?}"
        );
    }
}

#[test]
fn a_later_version_is_read_by_its_version_00_fields() {
    let later = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-what-the-future-says";
    let parent = parse_traceparent(later.as_bytes()).unwrap();
    assert_eq!(parent.flags, 3);
    // Written back as version 00, with only the sampled bit.
    assert_eq!(&parent.write(), GOOD.as_bytes());
    let exact = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert!(!parse_traceparent(exact.as_bytes()).unwrap().sampled());
}

#[test]
fn one_line_is_read_and_two_are_refused() {
    let one = [GOOD.as_bytes()];
    assert!(traceparent_of(one.into_iter()).unwrap().is_some());
    assert_eq!(traceparent_of(std::iter::empty()), Ok(None));
    let two = [GOOD.as_bytes(), GOOD.as_bytes()];
    assert_eq!(traceparent_of(two.into_iter()), Err(Refused::Duplicate));
}

#[test]
fn tracestate_is_kept_whole_or_not_at_all() {
    let kept = |lines: &[&str]| tracestate_of(lines.iter().map(|line| line.as_bytes()));
    assert_eq!(kept(&["congo=t61rcWkgMzE"]).unwrap(), b"congo=t61rcWkgMzE");
    assert_eq!(
        kept(&[
            "rojo=00f067aa0ba902b7 , ,congo=t61rcWkgMzE",
            "\tfw529a3039@dt=x y"
        ])
        .unwrap(),
        b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,fw529a3039@dt=x y"
    );
    assert_eq!(kept(&[]), None);
    assert_eq!(kept(&[" , "]), None);
    for bad in [
        "Rojo=1",
        "rojo",
        "rojo=",
        "rojo=a=b",
        "rojo=1,rojo=2",
        "1abc=x",
        "a@=x",
        "a@1sys=x",
        "a@systemnamewaytoolong=x",
        "rojo=a\tb",
        "rojo=\u{7f}",
    ] {
        assert_eq!(kept(&[bad]), None, "{bad:?}");
    }
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    assert_eq!(kept(&[&members.join(",")]), None, "33 members");
    assert!(kept(&[&members[..32].join(",")]).is_some(), "32 members");
    let long = format!("a={}", "x".repeat(250));
    let two = format!("{long},b={}", "y".repeat(250));
    assert_eq!(kept(&[&two]).unwrap().len(), 505);
    let three = format!("{two},c=12345");
    assert_eq!(kept(&[&format!("{two},c=1234")]).unwrap().len(), 512);
    assert_eq!(kept(&[&three]), None, "513 bytes");
}

#[test]
fn a_stamp_adds_the_fields_before_the_blank_line() {
    let parent = parse_traceparent(GOOD.as_bytes()).unwrap();
    let head = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    let stamped = stamp_head(head, &parent, Some(b"k=v"));
    assert_eq!(
        String::from_utf8(stamped).unwrap(),
        format!("GET / HTTP/1.1\r\nhost: a\r\ntraceparent: {GOOD}\r\ntracestate: k=v\r\n\r\n")
    );
    assert_eq!(
        stamp_head(b"GET / HTTP/1.1\r\n", &parent, None),
        b"GET / HTTP/1.1\r\n"
    );
}

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), len)
        .prop_map(|digits| String::from_utf8(digits).unwrap())
}

proptest! {
    #[test]
    fn any_bytes_give_a_verdict_and_what_reads_writes_back(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        if let Ok(parent) = parse_traceparent(&bytes) {
            prop_assert_ne!(parent.trace_id, [0; 16]);
            prop_assert_ne!(parent.parent_id, [0; 8]);
            prop_assert_eq!(parse_traceparent(&parent.write()), Ok(TraceParent {
                flags: parent.flags & SAMPLED,
                ..parent
            }));
        }
        if let Some(state) = tracestate_of(std::iter::once(bytes.as_slice())) {
            prop_assert!(state.len() <= MAX_TRACESTATE);
            prop_assert!(is_tracestate(&state));
            prop_assert!(!state.contains(&b'\r') && !state.contains(&b'\n'));
        }
    }

    #[test]
    fn well_formed_values_read(
        trace in hex(32),
        span in hex(16),
        flags in hex(2),
    ) {
        let value = format!("00-{trace}-{span}-{flags}");
        let read = parse_traceparent(value.as_bytes());
        let zero = trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0');
        prop_assert_eq!(read.is_ok(), !zero);
        if let Ok(parent) = read {
            let written = parent.write();
            prop_assert_eq!(&written[..52], &value.as_bytes()[..52]);
        }
        // Any upper-case letter breaks it.
        let upper = value.to_ascii_uppercase();
        if upper != value {
            prop_assert!(parse_traceparent(upper.as_bytes()).is_err());
        }
    }
}
