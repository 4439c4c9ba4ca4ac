//! The validity period of an X.509 certificate, read from its DER: webpki parses it but keeps it
//! private. Only the path to `tbsCertificate.validity` is walked (RFC 5280 §4.1); any other
//! shape is an error, never a panic.

/// A DER element: its tag and contents.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and what follows.
fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        // DER lengths here never need more than four bytes; zero is indefinite (BER only).
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((Element { tag, contents }, rest))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// `(not_before, not_after)` of a DER certificate, in seconds since the Unix epoch.
pub(crate) fn validity(certificate: &[u8]) -> Option<(i64, i64)> {
    let (cert, _) = element(certificate).filter(|(e, _)| e.tag == SEQUENCE)?;
    let (tbs, _) = element(cert.contents).filter(|(e, _)| e.tag == SEQUENCE)?;
    let mut rest = tbs.contents;
    let (mut next, mut after) = element(rest)?;
    if next.tag == VERSION {
        rest = after;
        (next, after) = element(rest)?;
    }
    // serialNumber, signature, issuer.
    if next.tag != INTEGER {
        return None;
    }
    let (signature, after) = element(after).filter(|(e, _)| e.tag == SEQUENCE)?;
    let _ = signature;
    let (_issuer, after) = element(after).filter(|(e, _)| e.tag == SEQUENCE)?;
    let (validity, _) = element(after).filter(|(e, _)| e.tag == SEQUENCE)?;
    let (not_before, after) = element(validity.contents)?;
    let (not_after, _) = element(after)?;
    Some((time(&not_before)?, time(&not_after)?))
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`, 1950-2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`), as
/// RFC 5280 §4.1.2.5 allows them: in UTC, with seconds, without fractions.
fn time(element: &Element<'_>) -> Option<i64> {
    let text = std::str::from_utf8(element.contents).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| digits.get(range)?.parse::<i64>().ok();
    let (year, rest) = match (element.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = number(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let month = number(rest..rest + 2)?;
    let day = number(rest + 2..rest + 4)?;
    let hour = number(rest + 4..rest + 6)?;
    let minute = number(rest + 6..rest + 8)?;
    let second = number(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tag: u8, text: &str) -> Option<i64> {
        time(&Element {
            tag,
            contents: text.as_bytes(),
        })
    }

    #[test]
    fn times_in_both_forms() {
        assert_eq!(at(UTC_TIME, "700101000000Z"), Some(0));
        assert_eq!(at(UTC_TIME, "491231235959Z"), Some(2_524_607_999));
        assert_eq!(at(GENERALIZED_TIME, "20000229120000Z"), Some(951_825_600));
        assert_eq!(
            at(GENERALIZED_TIME, "99991231235959Z"),
            Some(253_402_300_799)
        );
        for bad in [
            "700101000000",
            "7001010000Z",
            "701301000000Z",
            "70010100000aZ",
            "",
        ] {
            assert_eq!(at(UTC_TIME, bad), None, "{bad}");
        }
        assert_eq!(at(GENERALIZED_TIME, "700101000000Z"), None);
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        assert!(element(&[0x30, 0x05, 1, 2]).is_none());
        assert!(element(&[0x30, 0x80]).is_none());
        assert!(element(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(element(&[0x30, 0x82, 0x00]).is_none());
        assert!(validity(&[]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_an_answer(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = validity(&bytes);
        }
    }
}
