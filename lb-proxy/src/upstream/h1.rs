//! HTTP/1.1 on one upstream connection: the request head serialised once, the response head
//! parsed with `httparse` (hyper's own parser), and the response body framed by
//! `Content-Length`, chunked coding or the connection's end (RFC 9112 §6).
//!
//! Framing is strict where a lenient reading would let a backend smuggle a second response
//! into the connection's next exchange: differing or invalid `Content-Length` values, a
//! malformed chunk, bytes after the end of a response, or `Transfer-Encoding` in an HTTP/1.0
//! response are errors, and the connection is then never reused. A response with both
//! `Transfer-Encoding` and `Content-Length` is read by its chunked coding and its connection is
//! closed afterwards.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most headers a response head may carry (hyper's client default); its size is limited by
/// `upstream.max_response_header_bytes`.
pub const MAX_RESPONSE_HEADERS: usize = 100;
const _: () = assert!(
    MAX_RESPONSE_HEADERS <= 128,
    "Head::into_raw keeps one bit per line"
);
/// Longest chunk-size line or trailer line accepted, in bytes.
const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Largest trailer section read (and dropped), in bytes.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Read buffer room asked for before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Why an exchange on a connection failed; the connection is then closed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing the request failed.
    #[error("writing the request failed: {0}")]
    Write(io::Error),
    /// Reading the response failed.
    #[error("reading the response failed: {0}")]
    Read(io::Error),
    /// The backend closed or reset the connection without a single byte of a response.
    #[error("the backend closed the connection without answering")]
    ClosedWithoutAnswer,
    /// The backend closed the connection in the middle of a response head.
    #[error("the backend closed the connection before a complete response head")]
    ClosedBeforeHead,
    /// The response head is not valid HTTP/1.x.
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    /// The response head is larger than `upstream.max_response_header_bytes` or has more
    /// than [`MAX_RESPONSE_HEADERS`] headers.
    #[error("response head too large")]
    HeadTooLarge,
}

/// Why reading a response body failed; the client's response is then cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    /// The socket failed.
    #[error("reading the response body failed: {0}")]
    Io(#[from] io::Error),
    /// The backend closed the connection before the body's declared end.
    #[error("the backend closed the connection before the end of the response body")]
    Incomplete,
    /// The chunked coding is malformed.
    #[error("malformed chunked response body: {0}")]
    Chunk(&'static str),
}

/// Serialises a request head: request line, `headers` as they are, and the blank line.
/// `target` is the origin-form request target (`/path?query`).
pub fn encode_head(method: &Method, target: &str, headers: &HeaderMap) -> Bytes {
    let mut head = start_head(method, target, headers, 2);
    for (name, value) in headers {
        push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

/// A buffer holding the request line, with room for every field of `headers` and `extra`
/// more bytes.
pub fn start_head(method: &Method, target: &str, headers: &HeaderMap, extra: usize) -> Vec<u8> {
    let mut size = method.as_str().len() + target.len() + 11 + extra;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    let mut head = Vec::with_capacity(size);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    head
}

/// Appends one `name: value` field line.
pub fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// One connection to a backend and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
}

impl Connection {
    /// A fresh connection.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
        }
    }

    /// The socket, for hyper's client (only done with nothing left unread).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Whether an idle connection can carry a request: no event since it went idle, or an
    /// event that was not the backend closing it or sending unasked bytes.
    pub fn still_open(&self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes the whole request: `head`, then `body`.
    pub async fn write_request(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        if body.is_empty() {
            return self.stream.write_all(head).await;
        }
        let (mut head, mut body) = (head, body);
        while !head.is_empty() {
            let written = self
                .stream
                .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_head = written.min(head.len());
            head = &head[from_head..];
            body = &body[written - from_head..];
        }
        self.stream.write_all(body).await
    }

    /// Reads one byte batch into the buffer; `Ok(0)` at the end of the stream.
    ///
    /// Through `AsyncRead`, not `try_read_buf`: tokio's `poll_read` takes a read that did not
    /// fill the buffer as proof that the socket is drained and forgets its readiness, where
    /// `try_read_buf` keeps it until a read fails with `WouldBlock`, one more system call per
    /// response.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buffer.capacity() - self.buffer.len() < 1024 {
            self.buffer.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buffer)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Reads the response head (skipping interim 1xx responses) and frames its body.
    /// `expect_body` is false for a HEAD request, whose response has no body whatever its
    /// headers say; a head longer than `max_head_bytes` is an error.
    pub async fn read_response(
        mut self,
        expect_body: bool,
        max_head_bytes: usize,
    ) -> Result<(http::response::Parts, ResponseBody), ExchangeError> {
        // Whether an interim (1xx) response came: then the backend did answer.
        let mut answered = false;
        loop {
            let parsed = parse_head(&self.buffer)?;
            let Some(head) = parsed else {
                if self.buffer.len() >= max_head_bytes {
                    return Err(ExchangeError::HeadTooLarge);
                }
                let nothing_yet = self.buffer.is_empty() && !answered;
                match self.fill().await {
                    Ok(0) if nothing_yet => return Err(ExchangeError::ClosedWithoutAnswer),
                    Ok(0) => return Err(ExchangeError::ClosedBeforeHead),
                    Ok(_) => continue,
                    Err(error) if nothing_yet && error.kind() == io::ErrorKind::ConnectionReset => {
                        return Err(ExchangeError::ClosedWithoutAnswer);
                    }
                    Err(error) => return Err(ExchangeError::Read(error)),
                }
            };
            let head_bytes = self.buffer.split_to(head.length).freeze();
            if head.status.is_informational() {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(ExchangeError::Malformed("101 without an upgrade asked for"));
                }
                answered = true;
                continue;
            }
            let mut parts = http::Response::new(()).into_parts().0;
            parts.status = head.status;
            let (version, status) = (head.version, head.status);
            let (mut lines, connection) = match head.into_raw(head_bytes) {
                // The usual case: the head is kept as it came, less its hop-by-hop lines.
                Ok((raw, connection)) => (ResponseLines::Raw(raw), connection),
                Err((head, head_bytes)) => {
                    let ResponseHeaders {
                        headers,
                        connection,
                    } = head.headers(&head_bytes)?;
                    (ResponseLines::Map(headers), connection)
                }
            };
            let framing = frame_response(
                version,
                status,
                expect_body,
                || lines.content_lengths(),
                connection.transfer_encoding,
            )?;
            if framing.body != BodyFraming::Length(0) && connection.transfer_encoding.is_some() {
                // RFC 9112 §6.3: the coding overrides the length, which must not be forwarded.
                lines.remove_content_length();
            }
            let raw = match lines {
                ResponseLines::Raw(raw) => Some(raw),
                ResponseLines::Map(headers) => {
                    parts.headers = headers;
                    None
                }
            };
            let keep_alive = framing.reusable && connection.keeps_alive(version);
            let mut body = ResponseBody::new(self, framing.body, keep_alive);
            body.head = raw;
            return Ok((parts, body));
        }
    }
}

/// A response head as the backend sent it, less its hop-by-hop lines. Our own server loop
/// writes these lines to the client as they are, with no header map in between; for hyper's
/// server they are turned into one ([`RawHead::append_to`]).
#[derive(Debug, Clone)]
pub struct RawHead {
    bytes: Bytes,
    /// (name, value) byte ranges into `bytes`.
    fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl RawHead {
    /// The header lines, (name, value), names in the backend's case.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|(name, value)| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
    }

    /// Bytes of the head as received: room enough for its lines.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The values of the lines named `name` (lower case).
    fn values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    fn remove(&mut self, name: &[u8]) {
        let bytes = &self.bytes;
        self.fields
            .retain(|(field, _)| !bytes[field.clone()].eq_ignore_ascii_case(name));
    }

    /// Appends the lines to `headers`. `httparse` accepted them, so they are valid names and
    /// values; a line `http` would still refuse is left out rather than failing the response.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        headers.reserve(self.fields.len());
        for (name, value) in &self.fields {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&self.bytes[name.clone()]),
                HeaderValue::from_maybe_shared(self.bytes.slice(value.clone())),
            ) else {
                continue;
            };
            headers.append(name, value);
        }
    }
}

/// A response's header lines: kept as received, or in a map when its `Connection` header
/// named further headers to remove.
enum ResponseLines {
    Raw(RawHead),
    Map(HeaderMap),
}

impl ResponseLines {
    fn content_lengths(&self) -> impl Iterator<Item = &[u8]> {
        let (raw, map) = match self {
            ResponseLines::Raw(raw) => (Some(raw.values(b"content-length")), None),
            ResponseLines::Map(map) => (
                None,
                Some(
                    map.get_all(header::CONTENT_LENGTH)
                        .into_iter()
                        .map(HeaderValue::as_bytes),
                ),
            ),
        };
        raw.into_iter().flatten().chain(map.into_iter().flatten())
    }

    fn remove_content_length(&mut self) {
        match self {
            ResponseLines::Raw(raw) => raw.remove(b"content-length"),
            ResponseLines::Map(map) => {
                map.remove(header::CONTENT_LENGTH);
            }
        }
    }
}

/// A parsed response head: where it ends, and where its headers lie in the buffer.
struct Head {
    length: usize,
    version: Version,
    status: StatusCode,
    /// (name, value) byte ranges into the head.
    fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// The response's headers, and what its hop-by-hop ones said about the connection.
struct ResponseHeaders {
    headers: HeaderMap,
    connection: ConnectionFields,
}

/// What the hop-by-hop headers of a response said.
#[derive(Debug, Default, Clone, Copy)]
struct ConnectionFields {
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// `Transfer-Encoding` was present; `true` when its last coding is chunked.
    transfer_encoding: Option<bool>,
}

impl ConnectionFields {
    /// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`.
    fn keeps_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_11 {
            !self.close
        } else {
            self.keep_alive
        }
    }

    fn read_connection(&mut self, line: &[u8]) {
        for token in line.split(|&byte| byte == b',') {
            let token = token.trim_ascii();
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    fn read_transfer_encoding(&mut self, line: &[u8]) {
        // The last line's last coding decides (RFC 9112 §6.3).
        let last = line.rsplit(|&byte| byte == b',').next().unwrap_or_default();
        self.transfer_encoding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    }
}

impl Head {
    /// Whether the `Connection` lines name no header beyond `close` and `keep-alive`, so that
    /// leaving out the hop-by-hop set is all that has to be removed.
    fn connection_names_no_header(&self, head: &[u8]) -> bool {
        let connection_lines = self
            .fields
            .iter()
            .filter(|(name, _)| head[name.clone()].eq_ignore_ascii_case(b"connection"))
            .map(|(_, value)| &head[value.clone()]);
        crate::headers::connection_names_no_header(connection_lines)
    }

    /// The head kept as it came, less its hop-by-hop lines, and what those lines said; or,
    /// when `Connection` names further headers to remove, the head and its bytes back for the
    /// header map path.
    #[allow(clippy::result_large_err)]
    fn into_raw(mut self, head: Bytes) -> Result<(RawHead, ConnectionFields), (Self, Bytes)> {
        use crate::headers::{HopByHop, hop_by_hop_kind};
        let mut connection = ConnectionFields::default();
        // One bit per line (at most MAX_RESPONSE_HEADERS of them): the lines to leave out.
        let mut hop_by_hop_lines = 0u128;
        for (index, (name, value)) in self.fields.iter().enumerate() {
            let Some(kind) = hop_by_hop_kind(&head[name.clone()]) else {
                continue;
            };
            hop_by_hop_lines |= 1 << index;
            let value = &head[value.clone()];
            match kind {
                HopByHop::Connection => {
                    if !crate::headers::connection_names_no_header([value]) {
                        return Err((self, head));
                    }
                    connection.read_connection(value);
                }
                HopByHop::TransferEncoding => connection.read_transfer_encoding(value),
                HopByHop::Other => {}
            }
        }
        if hop_by_hop_lines != 0 {
            let mut index = 0;
            self.fields.retain(|_| {
                let keep = hop_by_hop_lines & (1 << index) == 0;
                index += 1;
                keep
            });
        }
        let raw = RawHead {
            bytes: head,
            fields: self.fields,
        };
        Ok((raw, connection))
    }

    /// The header map for the client. When `Connection` names no header beyond `close` and
    /// `keep-alive` (the usual case), the hop-by-hop headers are read here and left out of the
    /// map, so nothing has to be removed from it later; otherwise every header goes in and
    /// the caller's hop-by-hop removal does the work.
    fn headers(&self, head: &Bytes) -> Result<ResponseHeaders, ExchangeError> {
        let mut connection = ConnectionFields::default();
        let leave_out_hop_by_hop = self.connection_names_no_header(head);
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            let name = HeaderName::from_bytes(&head[name.clone()])
                .map_err(|_| ExchangeError::Malformed("invalid header name"))?;
            if name == header::CONNECTION {
                connection.read_connection(&head[value.clone()]);
            } else if name == header::TRANSFER_ENCODING {
                connection.read_transfer_encoding(&head[value.clone()]);
            }
            if leave_out_hop_by_hop && crate::headers::is_hop_by_hop(&name) {
                continue;
            }
            // httparse accepts only bytes that are valid in a header value.
            let value = HeaderValue::from_maybe_shared(head.slice(value.clone()))
                .map_err(|_| ExchangeError::Malformed("invalid header value"))?;
            headers.append(name, value);
        }
        Ok(ResponseHeaders {
            headers,
            connection,
        })
    }
}

fn parse_head(buffer: &[u8]) -> Result<Option<Head>, ExchangeError> {
    if buffer.is_empty() {
        return Ok(None);
    }
    // Uninitialised: zeroing a hundred slots before every parse cost more than the parse.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut fields,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ExchangeError::HeadTooLarge),
        Err(_) => return Err(ExchangeError::Malformed("not an HTTP/1.x response head")),
    };
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ExchangeError::Malformed("invalid status code"))?;
    let base = buffer.as_ptr() as usize;
    let range = |slice: &[u8]| {
        let start = slice.as_ptr() as usize - base;
        start..start + slice.len()
    };
    let fields = response
        .headers
        .iter()
        .map(|field| (range(field.name.as_bytes()), range(field.value)))
        .collect();
    Ok(Some(Head {
        length,
        version,
        status,
        fields,
    }))
}

/// How a response body ends, and whether its connection may carry another exchange after it.
struct Framing {
    body: BodyFraming,
    reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    /// This many bytes.
    Length(u64),
    /// Chunked coding.
    Chunked,
    /// Everything until the backend closes the connection.
    UntilClose,
}

/// RFC 9112 §6.3, message body length of a response.
fn frame_response<'a, Lengths: Iterator<Item = &'a [u8]>>(
    version: Version,
    status: StatusCode,
    expect_body: bool,
    content_lengths: impl Fn() -> Lengths,
    transfer_encoding: Option<bool>,
) -> Result<Framing, ExchangeError> {
    if !expect_body || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing {
            body: BodyFraming::Length(0),
            reusable: true,
        });
    }
    if let Some(chunked_last) = transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(ExchangeError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        let reusable = chunked_last && content_lengths().next().is_none();
        return Ok(Framing {
            body: if chunked_last {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilClose
            },
            reusable,
        });
    }
    match content_length(content_lengths())? {
        Some(length) => Ok(Framing {
            body: BodyFraming::Length(length),
            reusable: true,
        }),
        None => Ok(Framing {
            body: BodyFraming::UntilClose,
            reusable: false,
        }),
    }
}

/// The response's `Content-Length`: every line and every comma-separated value must be the same
/// decimal number.
fn content_length<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, ExchangeError> {
    let mut length = None;
    for line in lines {
        for value in line.split(|&byte| byte == b',') {
            let value = value.trim_ascii();
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(ExchangeError::Malformed("invalid Content-Length"));
            }
            let parsed = value
                .iter()
                .fold(0u64, |total, digit| total * 10 + u64::from(digit - b'0'));
            if length.is_some_and(|known| known != parsed) {
                return Err(ExchangeError::Malformed("differing Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes of trailer seen so far.
    Trailers(usize),
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// A backend's response body, read from its connection by the task that polls it. Once read
/// to its end, the connection can be taken back for the pool
/// ([`ResponseBody::take_finished_connection`]).
#[derive(Debug)]
pub struct ResponseBody {
    connection: Option<Connection>,
    state: State,
    keep_alive: bool,
    /// The response's head when it was kept as received (the map in its parts is then empty).
    head: Option<RawHead>,
}

impl ResponseBody {
    fn new(connection: Connection, framing: BodyFraming, keep_alive: bool) -> Self {
        let state = match framing {
            BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(length) => State::Length(length),
            BodyFraming::Chunked => State::Chunked(Chunked::Size),
            BodyFraming::UntilClose => State::UntilClose,
        };
        Self {
            connection: Some(connection),
            state,
            keep_alive,
            head: None,
        }
    }

    /// The response's head lines, when they were kept as received.
    pub fn raw_head(&self) -> Option<&RawHead> {
        self.head.as_ref()
    }

    /// Takes the response's head lines, when they were kept as received.
    pub fn take_raw_head(&mut self) -> Option<RawHead> {
        self.head.take()
    }

    /// The connection, once the body was read to its end and the connection may carry another
    /// exchange: kept alive by the backend, and nothing read beyond this response.
    pub fn take_finished_connection(&mut self) -> Option<Connection> {
        let reusable = matches!(self.state, State::Done)
            && self.keep_alive
            && self
                .connection
                .as_ref()
                .is_some_and(|connection| connection.buffer.is_empty());
        if reusable {
            self.connection.take()
        } else {
            None
        }
    }

    fn fail(&mut self, error: BodyReadError) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        self.state = State::Done;
        self.connection = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        let this = self.get_mut();
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if connection.buffer.is_empty() {
                        match ready!(connection.poll_fill(cx)) {
                            Ok(0) => return this.fail(BodyReadError::Incomplete),
                            Ok(_) => {}
                            Err(error) => return this.fail(error.into()),
                        }
                    }
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(connection.buffer.len());
                    let data = connection.buffer.split_to(take).freeze();
                    let left = left - take as u64;
                    this.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose => {
                    if connection.buffer.is_empty() {
                        match ready!(connection.poll_fill(cx)) {
                            Ok(0) => {
                                this.state = State::Done;
                                this.keep_alive = false;
                                return Poll::Ready(None);
                            }
                            Ok(_) => {}
                            Err(error) => return this.fail(error.into()),
                        }
                    }
                    let data = connection.buffer.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(step) => match decode_chunked(&mut connection.buffer, step) {
                    Err(message) => return this.fail(BodyReadError::Chunk(message)),
                    Ok((next, Some(data))) => {
                        this.state = State::Chunked(next);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok((next, None)) if next == Chunked::Trailers(usize::MAX) => {
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    Ok((next, None)) if next != step => this.state = State::Chunked(next),
                    Ok((_, None)) => match ready!(connection.poll_fill(cx)) {
                        Ok(0) => return this.fail(BodyReadError::Incomplete),
                        Ok(_) => {}
                        Err(error) => return this.fail(error.into()),
                    },
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

/// One step of the chunked decoder over what is buffered: the next state, and data when a
/// chunk's bytes are available. The same state and no data means more bytes are needed;
/// `Trailers(usize::MAX)` means the body ended.
fn decode_chunked(
    buffer: &mut BytesMut,
    step: Chunked,
) -> Result<(Chunked, Option<Bytes>), &'static str> {
    match step {
        Chunked::Size => {
            let Some(end) = find_crlf(buffer) else {
                return if buffer.len() > MAX_CHUNK_LINE_BYTES {
                    Err("chunk-size line too long")
                } else {
                    Ok((step, None))
                };
            };
            let line = &buffer[..end];
            let digits = line
                .iter()
                .position(|byte| !byte.is_ascii_hexdigit())
                .unwrap_or(line.len());
            let rest = &line[digits..];
            // Only a chunk extension (`;...`, optionally after whitespace) may follow the size.
            if digits == 0
                || digits > 15
                || !(rest.is_empty() || rest.trim_ascii_start().first() == Some(&b';'))
            {
                return Err("invalid chunk size");
            }
            let size = line[..digits].iter().fold(0u64, |size, &digit| {
                size * 16 + u64::from(char::from(digit).to_digit(16).unwrap_or(0))
            });
            buffer.advance(end + 2);
            Ok((
                if size == 0 {
                    Chunked::Trailers(0)
                } else {
                    Chunked::Data(size)
                },
                None,
            ))
        }
        Chunked::Data(left) => {
            if buffer.is_empty() {
                return Ok((step, None));
            }
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            let data = buffer.split_to(take).freeze();
            let left = left - take as u64;
            let next = if left == 0 {
                Chunked::DataEnd
            } else {
                Chunked::Data(left)
            };
            Ok((next, Some(data)))
        }
        Chunked::DataEnd => {
            if buffer.len() < 2 {
                return Ok((step, None));
            }
            if &buffer[..2] != b"\r\n" {
                return Err("chunk data not followed by CRLF");
            }
            buffer.advance(2);
            Ok((Chunked::Size, None))
        }
        Chunked::Trailers(seen) => {
            let Some(end) = find_crlf(buffer) else {
                return if seen + buffer.len() > MAX_TRAILER_BYTES {
                    Err("trailer section too long")
                } else {
                    Ok((step, None))
                };
            };
            buffer.advance(end + 2);
            if end == 0 {
                return Ok((Chunked::Trailers(usize::MAX), None));
            }
            let seen = seen + end + 2;
            if seen > MAX_TRAILER_BYTES {
                return Err("trailer section too long");
            }
            Ok((Chunked::Trailers(seen), None))
        }
    }
}

fn find_crlf(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|pair| pair == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked_body(mut wire: &[u8], split: usize) -> Result<Vec<u8>, &'static str> {
        let mut buffer = BytesMut::new();
        let mut step = Chunked::Size;
        let mut body = Vec::new();
        loop {
            match decode_chunked(&mut buffer, step)? {
                (Chunked::Trailers(usize::MAX), None) => return Ok(body),
                (next, Some(data)) => {
                    body.extend_from_slice(&data);
                    step = next;
                }
                (next, None) if next != step => step = next,
                (_, None) => {
                    if wire.is_empty() {
                        return Err("incomplete");
                    }
                    let take = split.min(wire.len());
                    buffer.extend_from_slice(&wire[..take]);
                    wire = &wire[take..];
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        for split in [1, 2, 3, 7, 64] {
            assert_eq!(
                chunked_body(wire, split).unwrap(),
                b"hello 0123456789",
                "{split}"
            );
        }
    }

    fn chunk_encode(chunks: &[Vec<u8>], extension: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
            wire.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
            if extension {
                wire.extend_from_slice(b";x=\"y\"");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\ntrailer: 1\r\n\r\n");
        wire
    }

    proptest::proptest! {
        #[test]
        fn any_chunked_body_decodes_to_its_bytes_at_any_read_size(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..8),
            split in 1usize..64,
            extension in proptest::bool::ANY,
        ) {
            let wire = chunk_encode(&chunks, extension);
            proptest::prop_assert_eq!(chunked_body(&wire, split).unwrap(), chunks.concat());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_chunked_decoder(
            wire in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            split in 1usize..64,
        ) {
            let _ = chunked_body(&wire, split);
        }

        #[test]
        fn arbitrary_heads_never_panic_the_parser(
            wire in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            expect_body in proptest::bool::ANY,
        ) {
            if let Ok(Some(head)) = parse_head(&wire) {
                let bytes = Bytes::copy_from_slice(&wire);
                if let Ok(parsed) = head.headers(&bytes) {
                    let _ = frame_response(
                        head.version,
                        head.status,
                        expect_body,
                        || lengths_in(&parsed.headers),
                        parsed.connection.transfer_encoding,
                    );
                }
                let (version, status) = (head.version, head.status);
                if let Ok((raw, connection)) = head.into_raw(bytes) {
                    let _ = frame_response(
                        version,
                        status,
                        expect_body,
                        || raw.values(b"content-length"),
                        connection.transfer_encoding,
                    );
                    let mut map = HeaderMap::new();
                    raw.append_to(&mut map);
                }
            }
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [
            &b"x\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                chunked_body(wire, 64).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let long_line = [b'1'; MAX_CHUNK_LINE_BYTES + 10];
        assert!(chunked_body(&long_line, 64).is_err());
    }

    fn lengths_in(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
        headers
            .get_all(header::CONTENT_LENGTH)
            .into_iter()
            .map(HeaderValue::as_bytes)
    }

    /// The framing of `head` read through the header map, checked to be the same when read
    /// from the head kept as received.
    fn framing(head: &str, expect_body: bool) -> Result<(BodyFraming, bool), ExchangeError> {
        let parsed = parse_head(head.as_bytes())?.expect("complete head");
        let bytes = Bytes::copy_from_slice(head.as_bytes());
        let ResponseHeaders {
            headers,
            connection,
        } = parsed.headers(&bytes)?;
        let framing = frame_response(
            parsed.version,
            parsed.status,
            expect_body,
            || lengths_in(&headers),
            connection.transfer_encoding,
        );
        let (version, status) = (parsed.version, parsed.status);
        let Ok((raw, raw_connection)) = parsed.into_raw(bytes) else {
            // Connection names a header: only the map path reads such a head.
            return framing.map(|framing| {
                (
                    framing.body,
                    framing.reusable && connection.keeps_alive(version),
                )
            });
        };
        let raw_framing = frame_response(
            version,
            status,
            expect_body,
            || raw.values(b"content-length"),
            raw_connection.transfer_encoding,
        );
        let framing = framing?;
        let raw_framing = raw_framing.expect("the raw head frames as the map does");
        assert_eq!(
            (framing.body, framing.reusable),
            (raw_framing.body, raw_framing.reusable)
        );
        assert_eq!(
            connection.keeps_alive(version),
            raw_connection.keeps_alive(version)
        );
        Ok((
            framing.body,
            framing.reusable && connection.keeps_alive(version),
        ))
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        use BodyFraming::*;
        let cases: [(&str, bool, (BodyFraming, bool)); 9] = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                (Length(5), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
                true,
                (Length(5), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                (Length(0), true),
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                true,
                (Length(0), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
                (Chunked, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                true,
                (Chunked, false),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                true,
                (UntilClose, false),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                true,
                (Length(5), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
                true,
                (Length(5), true),
            ),
        ];
        for (head, expect_body, expected) in cases {
            assert_eq!(framing(head, expect_body).unwrap(), expected, "{head:?}");
        }
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap(),
            (Length(5), false)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", true).unwrap(),
            (UntilClose, false)
        );
    }

    fn names(head: &str) -> Vec<String> {
        let parsed = parse_head(head.as_bytes()).unwrap().unwrap();
        let bytes = Bytes::copy_from_slice(head.as_bytes());
        let headers = parsed.headers(&bytes).unwrap().headers;
        headers
            .keys()
            .map(|name| name.as_str().to_owned())
            .collect()
    }

    #[test]
    fn hop_by_hop_response_headers_stay_out_of_the_map_unless_connection_names_others() {
        assert_eq!(
            names(
                "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
                 Proxy-Foo: 1\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"
            ),
            ["x-a", "content-length"]
        );
        // A named header is removed later, with the rest, by `strip_hop_by_hop`.
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nConnection: x-a\r\nKeep-Alive: 5\r\nX-A: 1\r\n\r\n"),
            ["connection", "keep-alive", "x-a"]
        );
    }

    #[test]
    fn ambiguous_lengths_are_errors() {
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(framing(head, true).is_err(), "{head:?}");
        }
    }

    #[test]
    fn heads_encode_as_written() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("example.test"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let head = encode_head(&Method::POST, "/p?q=1", &headers);
        assert_eq!(
            &head[..],
            b"POST /p?q=1 HTTP/1.1\r\nhost: example.test\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
    }
}
