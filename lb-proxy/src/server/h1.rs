//! Our own HTTP/1.1 server loop for the common request: a complete, well-formed head without a
//! body (GET, HEAD, DELETE, ...). It reads heads into one buffer per connection, parses them
//! with `httparse`, runs the request path, and writes the response head and body itself.
//!
//! Everything else — a request with a body, `Expect`, `Upgrade` or `CONNECT`, a head `httparse`
//! or `http` rejects, a head beyond the limits — is handed to hyper's server with every byte read
//! so far ([`Served::HandOff`]): body framing, `100-continue` and the error answers (400, 414,
//! 431, 505) stay hyper's. hyper's per-connection dispatcher, buffers and per-request head
//! encoding cost about 10,000 instructions per request with a new connection per request; this
//! loop does the same work for about 4,000 fewer (docs/performance.md, item 16).
//!
//! The response is framed as hyper frames it: `Content-Length` when the body's size is known,
//! chunked for HTTP/1.1 clients otherwise (close-delimited for HTTP/1.0), no body for HEAD, 1xx,
//! 204 and 304; `Connection: close` when the connection will close, `Connection: keep-alive`
//! for an HTTP/1.0 client that asked for it; a `Date` header when the response has none.

use std::cell::RefCell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::body::ClientBody;
use crate::forward::{ClientInfo, handle_parts};
use crate::idle::{BusyGuard, IdleTimeoutIo};
use crate::runtime::Shared;
use crate::upstream::h1::RawHead;

/// hyper's default limit on header lines; a head with more goes to hyper, which answers 431.
const MAX_REQUEST_HEADERS: usize = 100;
/// hyper's limit on the request target; a longer one goes to hyper, which answers 414.
const MAX_TARGET_BYTES: usize = (u16::MAX - 1) as usize;
/// The first allocation of a connection's read buffer; it grows up to the head limit.
const INITIAL_READ_BUFFER: usize = 4096;
/// Body data up to this size is copied behind the head (one write); larger data is written
/// from its own buffer.
const COPY_BODY_BYTES: usize = 16 * 1024;

/// Room in a response head for what is not in its map: status line, length or coding,
/// connection, date, the empty line.
const HEAD_OVERHEAD: usize = 160;

/// How serving a connection stopped.
#[derive(Debug)]
pub(super) enum Served {
    /// The connection is done: the client closed it, asked for close, misbehaved, or the
    /// daemon is draining.
    Closed,
    /// Quiet between requests for `server.idle_release_after`: the caller parks it. Nothing
    /// was read that is not served.
    Release,
    /// A request that hyper serves: these bytes (its head and whatever followed) come first.
    HandOff(BytesMut),
}

/// Serves bodyless requests on `io` until the connection closes, may be released, or a request
/// arrives that hyper must serve.
pub(super) async fn serve(
    io: &mut IdleTimeoutIo<TcpStream>,
    shared: &Shared,
    client: &Arc<ClientInfo>,
    max_head_bytes: usize,
) -> Served {
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    loop {
        let head = loop {
            if !buffer.is_empty() {
                match parse_request(&buffer) {
                    Parsed::Complete(head) => break head,
                    Parsed::HandOff => return Served::HandOff(buffer),
                    Parsed::Partial if buffer.len() >= max_head_bytes => {
                        return Served::HandOff(buffer);
                    }
                    Parsed::Partial => {}
                }
            }
            match read_more(io, &mut buffer, shared, client, max_head_bytes).await {
                Waited::Read => {}
                Waited::Closed => return Served::Closed,
                Waited::Release => return Served::Release,
            }
        };
        buffer.advance(head.length);
        // Boxed: an idle connection's task then holds no room for a request in flight, and
        // the task stays small enough that moving it costs little.
        // Written into its allocation: `Box::pin(exchange(..))` built the future on the stack
        // and then copied all of it (2.3 KB) to the heap.
        let exchanged = Box::into_pin(Box::write(
            Box::new_uninit(),
            exchange(
                io,
                &mut buffer,
                &mut out,
                shared,
                client,
                head,
                max_head_bytes,
            ),
        ))
        .await;
        match exchanged {
            Exchanged::KeepOpen => {}
            Exchanged::Close => {
                if !buffer.is_empty() {
                    // The client sent more after a request that closes the connection: a FIN
                    // first, so that closing with unread bytes (a reset) cannot destroy the
                    // response on its way.
                    let _ = io.shutdown().await;
                }
                return Served::Closed;
            }
            Exchanged::Failed => return Served::Closed,
        }
    }
}

/// How one request ended for its connection.
enum Exchanged {
    /// The response was sent; the next request may follow.
    KeepOpen,
    /// The response was sent; the connection closes now.
    Close,
    /// The client went away, or the response could not be sent whole.
    Failed,
}

/// Runs the request path for one head and writes its response. While the request path runs,
/// the socket is watched: a client that goes away abandons its request, and bytes of a
/// pipelined request wait in `buffer`.
///
/// A function returning an `async move` block, as [`handle_parts`] is: an `async fn` would
/// hold the head twice.
#[allow(clippy::manual_async_fn)] // see above: an `async fn` would hold its arguments twice
fn exchange<'a>(
    io: &'a mut IdleTimeoutIo<TcpStream>,
    buffer: &'a mut BytesMut,
    out: &'a mut Vec<u8>,
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    head: RequestHead,
    max_head_bytes: usize,
) -> impl Future<Output = Exchanged> + 'a {
    async move {
        let method = head.parts.method.clone();
        let version = head.parts.version;
        // Counted at once: the connection is busy from the moment its head is read.
        let busy = BusyGuard::for_request(client.clone());
        let response = {
            let mut handling =
                std::pin::pin!(handle_parts(shared, busy.client(), head.parts, None));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(response) = handling.as_mut().poll(cx) {
                    return Poll::Ready(Some(response));
                }
                while buffer.len() < max_head_bytes {
                    reserve(buffer, max_head_bytes);
                    match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut *buffer) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Pending => break,
                    }
                }
                Poll::Pending
            })
            .await
        };
        let Some(response) = response else {
            return Exchanged::Failed;
        };
        let last = !head.keep_alive || shared.draining.is_started();
        let written = write_response(io, out, response, &method, version, last).await;
        drop(busy);
        match written {
            Ok(true) => Exchanged::KeepOpen,
            Ok(false) => Exchanged::Close,
            Err(_) => Exchanged::Failed,
        }
    }
}

/// What waiting for more request bytes gave.
enum Waited {
    /// Bytes arrived.
    Read,
    /// The client closed, the socket failed or timed out, or the daemon is draining.
    Closed,
    /// Quiet long enough with nothing read: the connection may be released.
    Release,
}

/// Reads more of a request head into `buffer`. Between requests (an empty buffer) this is where
/// a draining daemon closes the connection and the idle timer's release request is taken.
async fn read_more(
    io: &mut IdleTimeoutIo<TcpStream>,
    buffer: &mut BytesMut,
    shared: &Shared,
    client: &ClientInfo,
    max_head_bytes: usize,
) -> Waited {
    std::future::poll_fn(|cx| {
        reserve(buffer, max_head_bytes);
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buffer) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Waited::Closed),
            Poll::Ready(Ok(_)) => return Poll::Ready(Waited::Read),
            Poll::Pending => {}
        }
        // The idle timer raises its flags while the read above waits, so they are read after it.
        if buffer.is_empty() {
            if shared.draining.is_started() {
                return Poll::Ready(Waited::Closed);
            }
            let activity = &client.activity;
            if activity.take_release_wanted() && activity.may_release() {
                return Poll::Ready(Waited::Release);
            }
        }
        Poll::Pending
    })
    .await
}

/// Makes room to read into: the first 4 KiB, then doubling up to the head limit.
fn reserve(buffer: &mut BytesMut, max_head_bytes: usize) {
    if buffer.capacity() > buffer.len() {
        return;
    }
    let more = buffer
        .len()
        .clamp(INITIAL_READ_BUFFER, max_head_bytes.max(INITIAL_READ_BUFFER));
    buffer.reserve(more);
}

/// A request head this loop serves.
struct RequestHead {
    /// Bytes of the head, up to and including its empty line.
    length: usize,
    parts: http::request::Parts,
    /// Whether the connection stays open after the response, as the client asked.
    keep_alive: bool,
}

// Returned once per request and taken apart at once: boxing the head would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Complete(RequestHead),
    Partial,
    HandOff,
}

/// Parses the head at the start of `buffer`. A head this loop does not serve, or cannot parse,
/// is hyper's: its answer to bad input is the daemon's.
fn parse_request(buffer: &[u8]) -> Parsed {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buffer,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::HandOff,
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Parsed::HandOff;
    };
    if target.len() > MAX_TARGET_BYTES {
        return Parsed::HandOff;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::HandOff;
    };
    if method == Method::CONNECT {
        return Parsed::HandOff;
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Header values and the target are views into one copy of the head, as hyper keeps them.
    let head = Bytes::copy_from_slice(&buffer[..length]);
    let base = buffer.as_ptr() as usize;
    let view = |slice: &[u8]| {
        let start = slice.as_ptr() as usize - base;
        head.slice(start..start + slice.len())
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    let mut close = false;
    let mut keep_alive_asked = false;
    for field in request.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::HandOff;
        };
        match name {
            http::header::CONTENT_LENGTH if field.value.trim_ascii() == b"0" => {}
            // A body, an expectation or a protocol change: hyper's framing and rules apply.
            http::header::CONTENT_LENGTH
            | http::header::TRANSFER_ENCODING
            | http::header::EXPECT
            | http::header::UPGRADE => return Parsed::HandOff,
            http::header::CONNECTION => {
                for token in field.value.split(|&byte| byte == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            _ => {}
        }
        let Ok(value) = HeaderValue::from_maybe_shared(view(field.value)) else {
            return Parsed::HandOff;
        };
        headers.append(name, value);
    }
    let Ok(uri) = Uri::from_maybe_shared(view(target.as_bytes())) else {
        return Parsed::HandOff;
    };
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive_asked);
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Parsed::Complete(RequestHead {
        length,
        parts,
        keep_alive,
    })
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked coding.
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, a body of unknown size).
    UntilClose,
}

/// The response head as hyper's server would write it, and how its body is framed; `last`
/// becomes true when the connection must close after this response.
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &ClientBody,
    method: &Method,
    version: Version,
    last: &mut bool,
) -> Framing {
    let status = parts.status;
    let no_body_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let head_request = *method == Method::HEAD;
    // The headers: the map's, and the backend's lines when our client kept them as received.
    let raw = body.raw_head();
    let fields = || {
        (parts.headers.iter())
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .chain(raw.into_iter().flat_map(RawHead::fields))
    };
    // `None`: the body is already over; `Some(None)`: its size is not known.
    let body_size = (!body.is_end_stream()).then(|| body.size_hint().exact());
    let framing = if no_body_status || head_request {
        Framing::Length(0)
    } else {
        match body_size {
            None => Framing::Length(0),
            Some(Some(length)) => Framing::Length(length),
            Some(None) => match declared_length(fields()) {
                Some(length) => Framing::Length(length),
                None if version == Version::HTTP_11 => Framing::Chunked,
                None => Framing::UntilClose,
            },
        }
    };
    if framing == Framing::UntilClose {
        *last = true;
    }

    out.clear();
    // Sized once: growing it line by line cost several reallocations per response.
    let map_bytes: usize = (parts.headers.iter())
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    out.reserve(map_bytes + raw.map_or(0, RawHead::size) + HEAD_OVERHEAD);
    if version == Version::HTTP_11 && status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if version == Version::HTTP_10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut wrote_date = false;
    let mut said_close = false;
    let mut declared_by_backend = false;
    for (name, value) in fields() {
        match Field::of(name) {
            Field::ContentLength => {
                declared_by_backend = true;
                // The framing is this function's: the declared length is written below, or
                // kept as it was for a HEAD request, whose response describes the body it
                // would have.
                if !head_request || no_body_status {
                    continue;
                }
            }
            Field::TransferEncoding => continue,
            Field::Connection => said_close |= has_token(value, b"close"),
            Field::Date => wrote_date = true,
            Field::Other => {}
        }
        push_field(out, name, value);
    }
    *last |= said_close;
    // What is declared: the body's length, or for a HEAD request whose headers declare none,
    // the length of the body it has.
    let declared = if no_body_status {
        None
    } else if head_request {
        match declared_by_backend {
            true => None,
            false => body_size.flatten(),
        }
    } else {
        match framing {
            Framing::Length(length) => Some(length),
            Framing::Chunked => {
                push_field(out, b"transfer-encoding", b"chunked");
                None
            }
            Framing::UntilClose => None,
        }
    };
    if let Some(length) = declared {
        let mut digits = itoa_buffer();
        push_field(out, b"content-length", format_u64(length, &mut digits));
    }
    if version == Version::HTTP_10 {
        if !*last {
            push_field(out, b"connection", b"keep-alive");
        }
    } else if *last && !said_close {
        push_field(out, b"connection", b"close");
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        push_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The response headers the head encoder treats specially, by name in any case.
enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    Other,
}

impl Field {
    fn of(name: &[u8]) -> Field {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            14 if is(b"content-length") => Field::ContentLength,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            10 if is(b"connection") => Field::Connection,
            4 if is(b"date") => Field::Date,
            _ => Field::Other,
        }
    }
}

/// The one `Content-Length` of a response whose body's size is not known up front.
fn declared_length<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<u64> {
    let mut lines = fields.filter(|(name, _)| matches!(Field::of(name), Field::ContentLength));
    let (_, first) = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let text = first.trim_ascii();
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0u64, |total, digit| total * 10 + u64::from(digit - b'0')),
    )
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// `value` in decimal, written at the end of `digits`.
fn format_u64(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &digits[start..];
        }
    }
}

thread_local! {
    /// The `Date` value of the current second: formatting it per response would cost more than
    /// the rest of the head.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    DATE.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *cached_second = second;
            } else {
                out.extend_from_slice(formatted.as_bytes());
                return;
            }
        }
        out.extend_from_slice(text);
    });
}

/// Writes the response. `Ok(true)`: the connection may carry the next request; `Ok(false)`:
/// it closes now; `Err`: the client or the body failed mid-response.
async fn write_response(
    io: &mut IdleTimeoutIo<TcpStream>,
    out: &mut Vec<u8>,
    response: Response<ClientBody>,
    method: &Method,
    version: Version,
    mut last: bool,
) -> std::io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let framing = encode_head(out, &parts, &body, method, version, &mut last);
    drop(parts);
    let mut left = match framing {
        Framing::Length(length) => length,
        _ => u64::MAX,
    };
    let body_failed = || std::io::Error::other("the response body failed");
    while left > 0 && !body.is_end_stream() {
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        let frame = match polled.await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more is ready: what is gathered goes out while the body waits.
                flush(io, out).await?;
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => {
                flush(io, out).await?;
                return Err(body_failed());
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers are not forwarded; empty data says nothing.
                _ => continue,
            },
        };
        match framing {
            Framing::Length(_) => {
                if data.len() as u64 > left {
                    flush(io, out).await?;
                    return Err(body_failed());
                }
                left -= data.len() as u64;
                push_data(io, out, data).await?;
            }
            Framing::Chunked => {
                let mut hex = [0u8; 16];
                out.extend_from_slice(format_hex(data.len(), &mut hex));
                out.extend_from_slice(b"\r\n");
                push_data(io, out, data).await?;
                out.extend_from_slice(b"\r\n");
            }
            Framing::UntilClose => push_data(io, out, data).await?,
        }
    }
    match framing {
        Framing::Length(_) if left > 0 => {
            // The backend's body ended before its declared length: the client must not take
            // what follows for a next response.
            flush(io, out).await?;
            return Err(body_failed());
        }
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        _ => {}
    }
    flush(io, out).await?;
    drop(body);
    Ok(!last)
}

async fn push_data(
    io: &mut IdleTimeoutIo<TcpStream>,
    out: &mut Vec<u8>,
    data: Bytes,
) -> std::io::Result<()> {
    if data.len() <= COPY_BODY_BYTES {
        out.extend_from_slice(&data);
        if out.len() >= COPY_BODY_BYTES {
            flush(io, out).await?;
        }
        return Ok(());
    }
    flush(io, out).await?;
    io.before_write(data.len());
    io.write_all(&data).await
}

async fn flush(io: &mut IdleTimeoutIo<TcpStream>, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        io.before_write(out.len());
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// `value` in lower-case hexadecimal, written at the end of `digits`.
fn format_hex(mut value: usize, digits: &mut [u8; 16]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[value % 16];
        value /= 16;
        if value == 0 {
            return &digits[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> RequestHead {
        match parse_request(bytes) {
            Parsed::Complete(head) => head,
            Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(bytes)),
            Parsed::HandOff => panic!("handed off: {}", String::from_utf8_lossy(bytes)),
        }
    }

    fn handed_off(bytes: &[u8]) -> bool {
        matches!(parse_request(bytes), Parsed::HandOff)
    }

    #[test]
    fn a_bodyless_request_is_parsed_whole() {
        let bytes = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next";
        let head = complete(bytes);
        assert_eq!(head.length, bytes.len() - b"GET /next".len());
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri, "/a?b=c");
        assert_eq!(head.parts.version, Version::HTTP_11);
        assert_eq!(head.parts.headers["host"], "x");
        let twos: Vec<_> = head.parts.headers.get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
        assert!(head.keep_alive);
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_tokens() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
        ];
        for (bytes, keep_alive) in cases {
            assert_eq!(
                complete(bytes).keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn what_hyper_must_serve_is_handed_off() {
        for bytes in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
        ] {
            assert!(handed_off(bytes), "{}", String::from_utf8_lossy(bytes));
        }
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..=MAX_REQUEST_HEADERS {
            many.extend_from_slice(format!("x-{index}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(handed_off(&many));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET_BYTES));
        assert!(handed_off(long.as_bytes()));
    }

    #[test]
    fn an_empty_declared_body_is_served_here() {
        let head = complete(b"DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(head.parts.method, Method::DELETE);
        assert_eq!(head.parts.headers["content-length"], "0");
    }

    #[test]
    fn a_partial_head_waits() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
    }

    fn encoded(
        response: Response<ClientBody>,
        method: Method,
        version: Version,
        last: bool,
    ) -> (String, Framing, bool) {
        let mut out = Vec::new();
        let mut last = last;
        let (parts, body) = response.into_parts();
        let framing = encode_head(&mut out, &parts, &body, &method, version, &mut last);
        (String::from_utf8(out).unwrap(), framing, last)
    }

    fn text_response(status: StatusCode) -> Response<ClientBody> {
        let mut response = Response::new(ClientBody::fixed("hello"));
        *response.status_mut() = status;
        response
    }

    #[test]
    fn heads_are_framed_as_hyper_frames_them() {
        let (head, framing, last) = encoded(
            text_response(StatusCode::OK),
            Method::GET,
            Version::HTTP_11,
            false,
        );
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: "));
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
        assert_eq!(framing, Framing::Length(5));
        assert!(!last);

        let (head, _, last) = encoded(
            text_response(StatusCode::BAD_GATEWAY),
            Method::GET,
            Version::HTTP_11,
            true,
        );
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(last);

        let (head, _, last) = encoded(
            text_response(StatusCode::OK),
            Method::GET,
            Version::HTTP_10,
            false,
        );
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
        assert!(!last);

        let mut refused = text_response(StatusCode::PAYLOAD_TOO_LARGE);
        refused
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        let (head, _, last) = encoded(refused, Method::GET, Version::HTTP_11, false);
        assert_eq!(head.matches("connection").count(), 1, "{head}");
        assert!(last);

        let mut dated = text_response(StatusCode::NO_CONTENT);
        dated.headers_mut().insert(
            http::header::DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        let (head, framing, _) = encoded(dated, Method::GET, Version::HTTP_11, false);
        assert_eq!(
            head,
            "HTTP/1.1 204 No Content\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
        assert_eq!(framing, Framing::Length(0));
    }

    #[test]
    fn a_head_response_keeps_its_declared_length_and_sends_no_body() {
        let mut response = Response::new(ClientBody::Fixed(None));
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        let (head, framing, _) = encoded(response, Method::HEAD, Version::HTTP_11, false);
        assert!(head.contains("\r\ncontent-length: 42\r\n"), "{head}");
        assert_eq!(framing, Framing::Length(0));
    }

    #[test]
    fn an_empty_body_declares_zero_whatever_the_map_said() {
        let mut response = Response::new(ClientBody::Fixed(None));
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        let (head, framing, _) = encoded(response, Method::GET, Version::HTTP_11, false);
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        assert!(!head.contains("42"), "{head}");
        assert_eq!(framing, Framing::Length(0));
    }

    #[test]
    fn numbers_are_formatted_exactly() {
        for value in [0u64, 7, 10, 255, 4096, u64::MAX] {
            let mut digits = itoa_buffer();
            assert_eq!(format_u64(value, &mut digits), value.to_string().as_bytes());
        }
        for value in [0usize, 9, 10, 15, 16, 255, 4096, 65535] {
            let mut digits = [0u8; 16];
            assert_eq!(
                format_hex(value, &mut digits),
                format!("{value:x}").as_bytes()
            );
        }
    }

    #[test]
    fn the_cached_date_is_an_imf_fixdate() {
        let mut out = Vec::new();
        push_date(&mut out);
        push_date(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.len(), 58, "{text}");
        assert!(httpdate::parse_http_date(&text[..29]).is_ok(), "{text}");
    }
}
