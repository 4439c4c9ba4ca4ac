//! The scrape against real servers on 127.0.0.1: each answer a metrics endpoint can give, and
//! the typed error, naming the URL, for each way it can fail.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lb_observe::scrape::{Options, ScrapeError, Scraper, fetch};

use crate::support::{Answer, Server, closed_port_url, ok, ok_chunked, status};

/// Far beyond any timeout set here: only a scrape that never returns reaches it. It bounds the
/// test's run, it does not measure the scrape.
const HANG: Duration = Duration::from_secs(60);

/// Short limits for the tests that wait on a timeout, so they end soon.
fn short() -> Options {
    Options {
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
        ..Options::default()
    }
}

/// Runs `scrape` on its own thread and returns its result, failing the test if it never returns.
fn bounded<T: Send + 'static>(scrape: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(scrape());
    });
    receiver
        .recv_timeout(HANG)
        .expect("the scrape returned instead of hanging")
}

/// Asserts that the error's message names `url`.
fn names(error: &ScrapeError, url: &str) {
    assert!(error.to_string().starts_with(url), "{error}");
}

#[test]
fn a_200_with_content_length_is_the_body() {
    let server = Server::start(vec![ok(b"lb_up 1\n")]);
    let body = fetch(&server.url(), &Options::default()).unwrap();
    assert_eq!(body, "lb_up 1\n");
    let head = server.head();
    assert!(head.starts_with("get /metrics http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nuser-agent: lb-observe/"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
}

#[test]
fn a_200_chunked_is_the_whole_body() {
    let text: String = (0..500)
        .map(|i| format!("lb_x{{i=\"{i}\"}} {i}\n"))
        .collect();
    let server = Server::start(vec![ok_chunked(text.as_bytes(), 97)]);
    assert_eq!(fetch(&server.url(), &Options::default()).unwrap(), text);
}

#[test]
fn a_404_is_a_status_error_naming_the_url() {
    let server = Server::start(vec![status(404, "Not Found")]);
    let url = server.url();
    let error = fetch(&url, &Options::default()).unwrap_err();
    assert!(
        matches!(error, ScrapeError::Status { status: 404, .. }),
        "{error:?}"
    );
    names(&error, &url);
    assert!(error.to_string().contains("HTTP status 404"), "{error}");
}

#[test]
fn a_redirect_is_not_followed() {
    let server = Server::start(vec![Answer::Bytes(
        b"HTTP/1.1 301 Moved\r\nlocation: /elsewhere\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            .to_vec(),
    )]);
    let error = fetch(&server.url(), &Options::default()).unwrap_err();
    assert!(
        matches!(error, ScrapeError::Status { status: 301, .. }),
        "{error:?}"
    );
}

#[test]
fn a_refused_connection_is_its_own_error() {
    let url = closed_port_url();
    let error = fetch(&url, &Options::default()).unwrap_err();
    assert!(matches!(error, ScrapeError::Refused { .. }), "{error:?}");
    names(&error, &url);
    assert!(error.to_string().contains("connection refused"), "{error}");
}

#[test]
fn a_server_that_never_answers_is_a_timeout() {
    let server = Server::start(vec![Answer::Stall(Vec::new())]);
    let url = server.url();
    let scraped = url.clone();
    let error = bounded(move || fetch(&scraped, &short())).unwrap_err();
    assert!(matches!(error, ScrapeError::Timeout { .. }), "{error:?}");
    names(&error, &url);
    assert!(error.to_string().contains("no answer within"), "{error}");
    // It did read the request: the wait was for the answer, not the connection.
    assert!(server.head().starts_with("get /metrics"));
}

#[test]
fn a_body_that_stops_halfway_is_a_timeout() {
    let server = Server::start(vec![Answer::Stall(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nlb_up 1\n".to_vec(),
    )]);
    let url = server.url();
    let error = bounded(move || fetch(&url, &short())).unwrap_err();
    assert!(matches!(error, ScrapeError::Timeout { .. }), "{error:?}");
}

#[test]
fn a_body_that_is_not_utf8_is_not_text() {
    let server = Server::start(vec![ok(b"lb_up 1\n\xff\xfe\x00")]);
    let url = server.url();
    let error = fetch(&url, &Options::default()).unwrap_err();
    assert!(matches!(error, ScrapeError::NotText { .. }), "{error:?}");
    names(&error, &url);
}

#[test]
fn a_body_over_the_limit_is_refused() {
    let server = Server::start(vec![ok_chunked(&[b'x'; 4096], 1000)]);
    let options = Options {
        max_body_bytes: 1024,
        ..Options::default()
    };
    let error = fetch(&server.url(), &options).unwrap_err();
    assert!(
        matches!(error, ScrapeError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
}

#[test]
fn an_answer_that_is_not_http_is_a_transport_error() {
    let server = Server::start(vec![Answer::Bytes(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec())]);
    let url = server.url();
    let error = fetch(&url, &Options::default()).unwrap_err();
    assert!(matches!(error, ScrapeError::Transport { .. }), "{error:?}");
    names(&error, &url);
}

#[test]
fn a_bearer_token_is_sent_as_authorization() {
    let server = Server::start(vec![ok(b"lb_up 1\n")]);
    let options = Options {
        bearer_token: Some("s3cret.Token-1==".into()),
        ..Options::default()
    };
    fetch(&server.url(), &options).unwrap();
    let head = server.head();
    assert!(
        head.contains("\r\nauthorization: bearer s3cret.token-1==\r\n"),
        "{head}"
    );
}

#[test]
fn one_scraper_fetches_again_and_again() {
    let server = Server::start(vec![ok(b"lb_up 1\n"), ok_chunked(b"lb_up 2\n", 3)]);
    let scraper = Scraper::new(&server.url(), Options::default()).unwrap();
    assert_eq!(scraper.url(), server.url());
    assert_eq!(scraper.fetch().unwrap(), "lb_up 1\n");
    assert_eq!(scraper.fetch().unwrap(), "lb_up 2\n");
    // The server answers two connections only: a third scrape finds the port closed.
    drop(server);
    assert!(scraper.fetch().is_err());
}

#[test]
fn a_bad_url_is_refused_before_any_connection() {
    for url in [
        "127.0.0.1:9090/metrics",
        "ftp://127.0.0.1/",
        "http://u:p@h/m",
    ] {
        let error = Scraper::new(url, Options::default()).unwrap_err();
        assert!(
            matches!(error, ScrapeError::BadUrl { .. }),
            "{url}: {error:?}"
        );
        assert!(error.to_string().contains(url), "{error}");
    }
}
