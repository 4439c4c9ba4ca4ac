//! The chunked decoder: any bytes give data or an error, never a panic; the verdict and the data
//! do not depend on how the bytes were split into reads; the data is never more than the input;
//! and the data, encoded again, decodes to itself.

use bytes::BytesMut;
use lb_proxy::proto::h1::chunked::{
    CHUNK_END, ChunkedDecoder, Decoded, LAST_CHUNK, push_chunk_size,
};

/// Decodes `wire` fed `split` bytes at a time: the body and the bytes after it, or the error.
fn decode(mut wire: &[u8], split: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
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
            Decoded::NeedMore if wire.is_empty() => return Err("incomplete".into()),
            Decoded::NeedMore => {
                let take = split.min(wire.len());
                buffer.extend_from_slice(&wire[..take]);
                wire = &wire[take..];
            }
        }
    }
}

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let whole = decode(data, usize::MAX);
    for split in [1, 3, 17] {
        assert_eq!(decode(data, split), whole, "split {split}");
    }
    if let Ok((body, rest)) = whole {
        assert!(body.len() + rest.len() <= data.len());
        let mut again = Vec::new();
        for piece in body.chunks(7) {
            push_chunk_size(&mut again, piece.len());
            again.extend_from_slice(piece);
            again.extend_from_slice(CHUNK_END);
        }
        again.extend_from_slice(LAST_CHUNK);
        assert_eq!(decode(&again, 5), Ok((body, Vec::new())));
    }
}
