//! A tiny HTTP/1.1 server on 127.0.0.1 port 0 for the scrape and admin tests: it accepts
//! connections one at a time, reads each request (its head, and a body as long as its
//! `Content-Length`), hands it to the test, and plays the canned [`Answer`] for that connection.
//! Plain `std::net` on a thread: the answers are raw bytes, so a test controls framing exactly
//! (length, chunked, nothing at all). `lb-cli`'s tests use this file too, through `#[path]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

/// What the server does with one connection after reading its request head.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Writes these bytes, then closes.
    Bytes(Vec<u8>),
    /// Writes these bytes (perhaps none), then keeps the connection open, saying nothing more,
    /// until the server is dropped.
    Stall(Vec<u8>),
}

/// A `200 OK` with `Content-Length` and `body`.
pub fn ok(body: &[u8]) -> Answer {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Answer::Bytes(bytes)
}

/// A `200 OK` whose body is sent chunked, in chunks of `size` bytes (with an extension on the
/// first chunk, which a reader must ignore).
pub fn ok_chunked(body: &[u8], size: usize) -> Answer {
    let mut bytes =
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for (i, chunk) in body.chunks(size).enumerate() {
        let extension = if i == 0 { ";x=y" } else { "" };
        bytes.extend_from_slice(format!("{:x}{extension}\r\n", chunk.len()).as_bytes());
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    Answer::Bytes(bytes)
}

/// An answer with `status` and a JSON `body`, as the admin API gives.
pub fn json(status: u16, body: &str) -> Answer {
    Answer::Bytes(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// An answer with `status` and a short text body.
pub fn status(status: u16, reason: &str) -> Answer {
    let body = format!("{status} {reason}\n");
    Answer::Bytes(
        format!(
            "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// How long the server waits for a request head before giving up on a connection, so a test
/// whose client never writes cannot leave the thread blocked forever.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// Largest request head read; a scrape's head is a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// Largest request body read; the admin client's largest is `{"weight":1000000}`.
const MAX_BODY: usize = 64 * 1024;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The head, as sent.
    pub head: String,
    /// The body, as sent.
    pub body: String,
}

/// A running server; dropping it ends its thread (and closes a silent connection).
pub struct Server {
    addr: SocketAddr,
    requests: Receiver<Request>,
    /// Dropped with the server: tells a silent connection to close.
    _stop: Sender<()>,
}

impl Server {
    /// Serves `answers`, one per connection in order; later connections are refused.
    pub fn start(answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (requests_tx, requests) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        thread::spawn(move || {
            for answer in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                if !serve(stream, &answer, &requests_tx, &stopped) {
                    return;
                }
            }
        });
        Self {
            addr,
            requests,
            _stop: stop,
        }
    }

    /// `http://ADDR/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// `http://ADDR`, the base of an admin URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request head the server read, lower-cased; waits at most [`READ_LIMIT`].
    pub fn head(&self) -> String {
        self.request().head.to_ascii_lowercase()
    }

    /// The next request the server read; waits at most [`READ_LIMIT`].
    pub fn request(&self) -> Request {
        self.requests
            .recv_timeout(READ_LIMIT)
            .expect("the server read a request")
    }
}

/// Plays `answer` on one connection; `false` when the test is over.
fn serve(
    mut stream: TcpStream,
    answer: &Answer,
    requests: &Sender<Request>,
    stopped: &Receiver<()>,
) -> bool {
    if stream.set_read_timeout(Some(READ_LIMIT)).is_err() {
        return false;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::to_owned)
        })
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(MAX_BODY)];
    if stream.read_exact(&mut body).is_err() {
        return false;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let _ = requests.send(Request { head, body });
    match answer {
        Answer::Bytes(bytes) => {
            let _ = stream.write_all(bytes);
            true
        }
        Answer::Stall(bytes) => {
            let _ = stream.write_all(bytes);
            // Holds the connection open, unfinished, until the server is dropped.
            let _ = stopped.recv();
            false
        }
    }
}

/// A loopback address where nothing listens: a port bound and released.
pub fn closed_port_url() -> String {
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address");
    format!("http://{addr}/metrics")
}
