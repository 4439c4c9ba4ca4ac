use super::*;
use proptest::prelude::*;

/// Decodes `wire` fed `split` bytes at a time: the body, and the bytes left after it.
pub(crate) fn decode_all(mut wire: &[u8], split: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut decoder = ChunkedDecoder::new();
    let mut buffer = BytesMut::new();
    let mut body = Vec::new();
    loop {
        match decoder
            .decode(&mut buffer)
            .map_err(|error| error.to_string())?
        {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::End => {
                let mut rest = buffer.to_vec();
                rest.extend_from_slice(wire);
                return Ok((body, rest));
            }
            Decoded::NeedMore => {
                if wire.is_empty() {
                    return Err("incomplete".into());
                }
                let take = split.min(wire.len());
                buffer.extend_from_slice(&wire[..take]);
                wire = &wire[take..];
            }
        }
    }
}

#[test]
fn bodies_decode_whatever_the_read_sizes() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA ; a=\"b c\"\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    for split in [1, 2, 3, 7, 64] {
        let (body, rest) = decode_all(wire, split).unwrap();
        assert_eq!(body, b"hello 0123456789", "{split}");
        assert_eq!(rest, b"NEXT", "{split}");
    }
}

#[test]
fn malformed_bodies_are_errors_of_their_kind() {
    let long_line = format!(
        "5;{}\r\nhello\r\n0\r\n\r\n",
        "e".repeat(MAX_SIZE_LINE_BYTES)
    );
    let cases: &[(&[u8], ChunkedError)] = &[
        (b"x\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"0x5\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"+5\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"-5\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"5_0\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"5 5\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b" 5\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"\r\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"10000000000000000\r\n", ChunkedError::SizeOverflow),
        (b"5\nhello\r\n0\r\n\r\n", ChunkedError::InvalidSize),
        (b"5\r\rhello\r\n0\r\n\r\n", ChunkedError::InvalidLineEnd),
        (b"5\r\nhelloXX0\r\n\r\n", ChunkedError::InvalidLineEnd),
        (b"5\r\nhello\n0\r\n\r\n", ChunkedError::InvalidLineEnd),
        (
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            ChunkedError::InvalidExtension,
        ),
        (
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            ChunkedError::InvalidExtension,
        ),
        (long_line.as_bytes(), ChunkedError::ExtensionTooLong),
        (b"0\r\nno colon\r\n\r\n", ChunkedError::InvalidTrailer),
        (b"0\r\n: empty name\r\n\r\n", ChunkedError::InvalidTrailer),
        (b"0\r\nx: a\x01\r\n\r\n", ChunkedError::InvalidTrailer),
        (b"0\r\nx: a\n\r\n", ChunkedError::InvalidTrailer),
        (b"0\r\n\rx", ChunkedError::InvalidLineEnd),
    ];
    for (wire, want) in cases {
        assert_eq!(
            decode_all(wire, 64),
            Err(want.to_string()),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn extensions_and_trailers_are_bounded_over_the_whole_body() {
    let chunk = format!("1;{}\r\nx\r\n", "e".repeat(1000));
    let many = chunk.repeat(MAX_EXTENSION_BYTES / 1000 + 1) + "0\r\n\r\n";
    assert_eq!(
        decode_all(many.as_bytes(), 4096),
        Err(ChunkedError::ExtensionTooLong.to_string())
    );
    let trailers = format!(
        "0\r\n{}\r\n",
        "x-t: v\r\n".repeat(MAX_TRAILER_BYTES / 8 + 1)
    );
    assert_eq!(
        decode_all(trailers.as_bytes(), 4096),
        Err(ChunkedError::TrailersTooLong.to_string())
    );
}

/// A chunked encoding of `chunks`, with extensions and trailers when asked.
pub(crate) fn encode(chunks: &[Vec<u8>], extension: bool, trailer: bool) -> Vec<u8> {
    let mut wire = Vec::new();
    for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
        push_chunk_size(&mut wire, chunk.len());
        if extension {
            // Before the CRLF push_chunk_size wrote.
            wire.truncate(wire.len() - 2);
            wire.extend_from_slice(b" ;x=\"y\";z\r\n");
        }
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(CHUNK_END);
    }
    if trailer {
        wire.extend_from_slice(b"0\r\nx-sum: 1\r\nx-more:\r\n\r\n");
    } else {
        wire.extend_from_slice(LAST_CHUNK);
    }
    wire
}

proptest! {
    #[test]
    fn any_encoded_body_decodes_to_its_bytes_at_any_read_size(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        split in 1usize..64,
        extension in any::<bool>(),
        trailer in any::<bool>(),
        rest in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut wire = encode(&chunks, extension, trailer);
        wire.extend_from_slice(&rest);
        let (body, left) = decode_all(&wire, split).unwrap();
        prop_assert_eq!(body, chunks.concat());
        prop_assert_eq!(left, rest);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_yield_more_than_they_hold(
        wire in prop::collection::vec(any::<u8>(), 0..512),
        split in 1usize..64,
    ) {
        if let Ok((body, rest)) = decode_all(&wire, split) {
            prop_assert!(body.len() + rest.len() <= wire.len());
        }
    }

    #[test]
    fn the_verdict_does_not_depend_on_how_the_bytes_were_split(
        wire in prop::collection::vec(prop::sample::select(b"0123456789abcdefxX;= \t\r\n:".to_vec()), 0..64),
        split in 1usize..16,
    ) {
        prop_assert_eq!(decode_all(&wire, split), decode_all(&wire, 4096));
    }
}
