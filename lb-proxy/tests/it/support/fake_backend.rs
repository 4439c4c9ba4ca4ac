//! A programmable backend on raw sockets, for fault injection.
//!
//! Each accepted connection takes the next [`Behaviour`] from a script (the last one repeats),
//! so a test can make the first connection hang and the second answer, or send garbage, or
//! reset half way through a body. Every byte received is recorded per connection, so a test
//! can assert exactly what reached the backend: no smuggled second request, a POST seen once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::find;

/// What the fake does with one connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answer every request on the connection with `200` and this body (keep-alive).
    Respond(&'static str),
    /// Read and record forever; never answer.
    Hang,
    /// Read the request head, then reset the connection (SO_LINGER 0) before any answer.
    ResetBeforeHead,
    /// Answer with `Content-Length: declared`, send `sent` bytes of body, then reset.
    PartialBodyThenReset {
        /// The length announced in the head.
        declared: usize,
        /// The bytes actually sent before the reset.
        sent: usize,
    },
    /// Read the request head, answer these bytes instead of a response, then close.
    Raw(&'static [u8]),
    /// Answer every request on the connection with these bytes, and keep the connection.
    Answers(&'static [u8]),
    /// Answer one request with `200` and this body, as if keeping the connection, then close it
    /// after the given pause.
    RespondThenClose(&'static str, Duration),
    /// Answer with `Content-Length: declared`, send `sent` bytes of body, then stall: neither
    /// more bytes nor a close.
    PartialBodyThenStall {
        /// The length announced in the head.
        declared: usize,
        /// The bytes actually sent before the stall.
        sent: usize,
    },
}

impl Behaviour {
    /// Bytes that are not HTTP at all.
    pub const GARBAGE: Behaviour = Behaviour::Raw(b"\x00\x01SSH-2.0-nope\r\n\r\n");
    /// A head whose Content-Length is not a number.
    pub const INVALID_LENGTH: Behaviour =
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 12abc\r\n\r\nhello world!");
    /// A head with two differing Content-Length values.
    pub const DIFFERING_LENGTHS: Behaviour =
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!");
}

/// The bytes one connection delivered, appended as they arrive.
type Record = Arc<Mutex<Vec<u8>>>;

/// The requests the fake parsed, by its own framing: (head, body), in arrival order.
type Parsed = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A running fake backend.
#[derive(Debug)]
pub struct FakeBackend {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<Record>>>,
    parsed: Parsed,
    task: JoinHandle<()>,
}

impl FakeBackend {
    /// Starts a fake on a free loopback port; connection `n` follows `script[n]`, and the last
    /// entry repeats for every later connection.
    pub async fn start(script: Vec<Behaviour>) -> FakeBackend {
        assert!(!script.is_empty(), "a script needs at least one behaviour");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("fake address");
        let connections: Arc<Mutex<Vec<Record>>> = Arc::default();
        let recorded = connections.clone();
        let parsed = Parsed::default();
        let parsed_by_task = parsed.clone();
        let task = tokio::spawn(async move {
            let mut index = 0usize;
            while let Ok((stream, _)) = listener.accept().await {
                let behaviour = script[index.min(script.len() - 1)].clone();
                index += 1;
                let record = Record::default();
                recorded.lock().unwrap().push(record.clone());
                tokio::spawn(serve(stream, behaviour, record, parsed_by_task.clone()));
            }
        });
        FakeBackend {
            addr,
            connections,
            parsed,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections were accepted.
    pub fn connection_count(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// The bytes received on each connection, in accept order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|record| record.lock().unwrap().clone())
            .collect()
    }

    /// Every byte received, all connections joined, as text.
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received().concat()).into_owned()
    }

    /// How many request heads reached the fake: request lines, counted on every connection.
    pub fn request_heads(&self) -> usize {
        request_heads(&self.received_text())
    }

    /// The requests parsed by the fake's own framing, (head, body): what a backend that
    /// trusts the balancer's framing sees as requests.
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.parsed.lock().unwrap().clone()
    }

    /// The spec line for a test configuration: (name, address, weight 1).
    pub fn spec(&self, name: &str) -> (String, SocketAddr, u32) {
        (name.to_owned(), self.addr, 1)
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts request lines in `text`: each ends in ` HTTP/1.x` and CRLF. Counted anywhere, not
/// just at line starts, since on a keep-alive connection a head follows a body directly.
pub fn request_heads(text: &str) -> usize {
    text.matches(" HTTP/1.1\r\n").count() + text.matches(" HTTP/1.0\r\n").count()
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, record: Record, parsed: Parsed) {
    let mut buffer = Vec::new();
    let record = (record, parsed);
    match behaviour {
        Behaviour::Hang => {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                record.0.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        }
        Behaviour::PartialBodyThenStall { declared, sent } => {
            if read_request(&mut stream, &mut buffer, &record).await {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\n\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&vec![b's'; sent]).await;
                // Hold the connection open, reading whatever comes, until the peer closes.
                let mut chunk = [0u8; 4096];
                while let Ok(1..) = stream.read(&mut chunk).await {}
            }
        }
        Behaviour::ResetBeforeHead => {
            if read_request(&mut stream, &mut buffer, &record).await {
                reset(stream);
            }
        }
        Behaviour::PartialBodyThenReset { declared, sent } => {
            if read_request(&mut stream, &mut buffer, &record).await {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\n\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&vec![b'p'; sent]).await;
                let _ = stream.flush().await;
                // Give the bytes time to leave before the RST discards what is unsent.
                tokio::time::sleep(Duration::from_millis(50)).await;
                reset(stream);
            }
        }
        Behaviour::Raw(bytes) => {
            if read_request(&mut stream, &mut buffer, &record).await {
                let _ = stream.write_all(bytes).await;
                let _ = stream.shutdown().await;
            }
        }
        Behaviour::Answers(bytes) => {
            while read_request(&mut stream, &mut buffer, &record).await {
                if stream.write_all(bytes).await.is_err() {
                    break;
                }
            }
        }
        Behaviour::RespondThenClose(body, pause) => {
            if read_request(&mut stream, &mut buffer, &record).await {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                tokio::time::sleep(pause).await;
                let _ = stream.shutdown().await;
            }
        }
        Behaviour::Respond(body) => {
            while read_request(&mut stream, &mut buffer, &record).await {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: fake\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Closes with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Reads one whole request (head, then a Content-Length or chunked body) into `buffer`,
/// recording the bytes; false when the peer closed first. Leftover bytes stay in `buffer`.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    record: &(Record, Parsed),
) -> bool {
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if !fill(stream, buffer, record).await {
            return false;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    let chunked = head
        .lines()
        .any(|line| line.starts_with("transfer-encoding:") && line.contains("chunked"));
    let end = if chunked {
        loop {
            if let Some(at) = find(&buffer[head_end..], b"0\r\n\r\n") {
                break head_end + at + 5;
            }
            if !fill(stream, buffer, record).await {
                return false;
            }
        }
    } else {
        let end = head_end + length.unwrap_or(0);
        while buffer.len() < end {
            if !fill(stream, buffer, record).await {
                return false;
            }
        }
        end
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let body = buffer[head_end..end].to_vec();
    record.1.lock().unwrap().push((head, body));
    buffer.drain(..end);
    true
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, record: &(Record, Parsed)) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            record.0.lock().unwrap().extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// What a raw client saw: the bytes it read, and whether the balancer closed the connection.
#[derive(Debug)]
pub struct RawAnswer {
    /// Everything read until the close (or the time limit).
    pub bytes: Vec<u8>,
    /// True when the connection ended (EOF or reset) within the time limit.
    pub closed: bool,
    /// True when it ended with an error (a reset) rather than a clean EOF.
    pub aborted: bool,
}

impl RawAnswer {
    /// The status code of the first response, 0 when there is none.
    pub fn status(&self) -> u16 {
        let text = String::from_utf8_lossy(&self.bytes);
        text.strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// The bytes as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Connects to `addr`, writes `request` as is, and reads until the connection ends or `limit`.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> RawAnswer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The balancer may answer and close before it read everything; a failed write is fine.
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream, limit).await
}

/// Reads from `stream` until it ends or `limit` passes.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> RawAnswer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => {
                return RawAnswer {
                    bytes,
                    closed: false,
                    aborted: false,
                };
            }
            Ok(Ok(0)) => {
                return RawAnswer {
                    bytes,
                    closed: true,
                    aborted: false,
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => {
                return RawAnswer {
                    bytes,
                    closed: true,
                    aborted: true,
                };
            }
        }
    }
}
