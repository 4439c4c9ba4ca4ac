//! Fetching the metrics text: one blocking HTTP/1.1 `GET` over `std::net::TcpStream`.
//!
//! A dashboard that scrapes once a second needs no async runtime and no connection pool: a
//! plain socket with connect, read and write timeouts, `Connection: close`, and a body read to
//! the end (or by `Content-Length`, or de-chunked) is enough, and keeps `lb-tui` free of tokio
//! and hyper. Only `http://` URLs are supported; the daemon's metrics listener speaks nothing
//! else.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

/// The metrics URL the daemon serves by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/metrics";

/// Responses larger than this are refused: the daemon's metrics are a few tens of kilobytes.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// Why a scrape failed.
#[derive(Debug, Error)]
pub enum ScrapeError {
    /// The URL is not `http://HOST[:PORT][/PATH]`.
    #[error("bad metrics URL `{0}`: expected http://HOST:PORT/PATH")]
    BadUrl(String),
    /// Connecting, writing or reading failed (refused, timed out, reset).
    #[error("{addr}: {source}")]
    Io {
        /// `host:port` we talked to.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not HTTP/1.x.
    #[error("{0}: the answer is not HTTP")]
    NotHttp(String),
    /// The server answered with a status other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL fetched.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is not UTF-8 text.
    #[error("{0}: the body is not UTF-8 text")]
    NotText(String),
}

/// A response read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

/// The parts of an `http://` URL we use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    authority: String,
    host_port: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, ScrapeError> {
    let bad = || ScrapeError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
        return Err(bad());
    }
    // A port is present if the part after the last ':' is digits and not inside an IPv6 bracket.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_port = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Url {
        authority: authority.to_owned(),
        host_port,
        path: path.to_owned(),
    })
}

/// `GET url` with `timeout` for connecting and for each read and write.
///
/// # Errors
/// [`ScrapeError`] for a bad URL, a socket error or timeout, or an answer that is not HTTP.
pub fn get(url: &str, timeout: Duration) -> Result<Response, ScrapeError> {
    let parsed = parse_url(url)?;
    let io = |source| ScrapeError::Io {
        addr: parsed.host_port.clone(),
        source,
    };
    let addrs = parsed.host_port.to_socket_addrs().map_err(io)?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| io(last))?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\nUser-Agent: lb-tui\r\n\r\n",
        parsed.path, parsed.authority
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse_response(&raw).ok_or_else(|| ScrapeError::NotHttp(url.to_owned()))
}

/// Fetches the metrics text at `url`: a `GET` that must answer 200 with UTF-8.
///
/// # Errors
/// As [`get`], plus [`ScrapeError::Status`] and [`ScrapeError::NotText`].
pub fn fetch_metrics(url: &str, timeout: Duration) -> Result<String, ScrapeError> {
    let response = get(url, timeout)?;
    if response.status != 200 {
        return Err(ScrapeError::Status {
            url: url.to_owned(),
            status: response.status,
        });
    }
    String::from_utf8(response.body).map_err(|_| ScrapeError::NotText(url.to_owned()))
}

/// Splits a raw HTTP/1.x response into status and body; `None` if it is not one.
fn parse_response(raw: &[u8]) -> Option<Response> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next()?.split(' ');
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().ok()?);
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(length) = length {
        body.get(..length)?.to_vec()
    } else {
        body.to_vec()
    };
    Some(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        let url = parse_url("http://127.0.0.1:9090/metrics").unwrap();
        assert_eq!(url.host_port, "127.0.0.1:9090");
        assert_eq!(url.path, "/metrics");
        let url = parse_url("http://localhost").unwrap();
        assert_eq!(
            (url.host_port.as_str(), url.path.as_str()),
            ("localhost:80", "/")
        );
        let url = parse_url("http://[::1]:9/m").unwrap();
        assert_eq!(url.host_port, "[::1]:9");
        for bad in ["https://x/", "127.0.0.1:9090", "http:///m", "http://u@h/"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let plain = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"abc"[..]));
        let chunked = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (404, &b"abcde"[..])
        );
        let to_close = parse_response(b"HTTP/1.0 200 OK\r\n\r\nall").unwrap();
        assert_eq!(to_close.body, b"all");
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_none());
    }

    /// Serves `answer` once on a loopback port; returns the URL.
    fn serve_once(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer);
        });
        format!("http://{addr}/metrics")
    }

    #[test]
    fn fetches_over_a_real_socket() {
        let url = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nm 1\n");
        assert_eq!(
            fetch_metrics(&url, Duration::from_secs(5)).unwrap(),
            "m 1\n"
        );
        let url = serve_once(b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n");
        assert!(matches!(
            fetch_metrics(&url, Duration::from_secs(5)),
            Err(ScrapeError::Status { status: 503, .. })
        ));
    }

    #[test]
    fn a_closed_port_is_an_io_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: the port refuses connections.
        let error = fetch_metrics(&format!("http://{addr}/metrics"), Duration::from_secs(5));
        assert!(matches!(error, Err(ScrapeError::Io { .. })), "{error:?}");
    }
}
