//! A raw HTTP/1.1 client for tests that write bytes themselves: reading responses off a
//! keep-alive connection, framed by `Content-Length`, by the chunked coding (decoded here,
//! strictly and independently of the balancer's codec), or by the connection's end.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{find, header};

/// How long a test waits for bytes it expects.
const LIMIT: Duration = Duration::from_secs(10);

/// One response: status, head in lower case, decoded body.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The head, lower-cased.
    pub head: String,
    /// The body, decoded from its framing.
    pub body: Vec<u8>,
}

/// The first response in `bytes` and how many bytes it took, or `None` while incomplete. A
/// response to HEAD, a 204 and a 304 have no body; with neither length nor chunked coding the
/// body runs to the end of `bytes`.
pub fn parse_response(bytes: &[u8], head_request: bool) -> Option<(RawResponse, usize)> {
    let end = find(bytes, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let rest = &bytes[end..];
    let bodiless = head_request || status == 204 || status == 304;
    let (body, used) = if bodiless {
        (Vec::new(), end)
    } else if let Some(length) = header(&head, "content-length") {
        let length: usize = length.parse().expect("content-length");
        (rest.get(..length)?.to_vec(), end + length)
    } else if header(&head, "transfer-encoding") == Some("chunked") {
        let (body, used) = dechunk(rest)?;
        (body, end + used)
    } else {
        (rest.to_vec(), bytes.len())
    };
    Some((RawResponse { status, head, body }, used))
}

/// A chunked body at the start of `wire`: its data and the bytes it took, or `None` while
/// incomplete. Panics on bad framing: the balancer must never send it.
fn dechunk(wire: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&wire[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&wire[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("a hex chunk size");
        let data_start = line_end + 2;
        let data_end = data_start + size;
        let chunk_end = wire.get(data_end..data_end + 2)?;
        assert_eq!(chunk_end, b"\r\n", "a chunk not followed by CRLF");
        body.extend_from_slice(&wire[data_start..data_end]);
        at = data_end + 2;
        if size == 0 {
            return Some((body, at));
        }
    }
}

/// Takes one response off the front of `bytes`.
pub fn take_response(bytes: &mut Vec<u8>, head_request: bool) -> RawResponse {
    let (response, used) = parse_response(bytes, head_request).expect("a complete response");
    bytes.drain(..used);
    response
}

/// Reads from `stream` until `count` complete responses (not to HEAD) are buffered, the stream
/// ends, or the limit passes; returns what was read.
pub async fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut chunk = [0u8; 8192];
    loop {
        let mut at = 0;
        let complete = (0..count).all(|_| match parse_response(&bytes[at..], false) {
            Some((_, used)) => {
                at += used;
                true
            }
            None => false,
        });
        if complete {
            return bytes;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return bytes,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads exactly one response off a keep-alive connection: nothing may follow it, and the
/// connection may not close before it is complete.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut bytes = read_responses(stream, 1).await;
    let (response, used) = parse_response(&bytes, false).unwrap_or_else(|| {
        panic!(
            "no complete response: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    bytes.drain(..used);
    assert!(bytes.is_empty(), "bytes after the response: {bytes:?}");
    response
}

/// Sends `request` on `stream` and reads the one response it gets, and the bytes that came
/// after it.
pub async fn ask(stream: &mut TcpStream, request: &[u8]) -> (RawResponse, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    let mut bytes = read_responses(stream, 1).await;
    let response = take_response(&mut bytes, false);
    (response, bytes)
}

/// `GET path` on `stream`, and its response.
pub async fn get_on(stream: &mut TcpStream, path: &str) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(stream).await
}
