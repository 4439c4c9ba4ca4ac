//! `lb-cli status`: a one-shot table of a running daemon's backends, read from its metrics.
//!
//! It uses `lb-observe`'s scrape, parser and model, as `lb-tui` does, so the figures are the
//! dashboard's: one scrape gives the single-scrape view, whose error share covers the daemon's
//! whole life (there is no previous scrape to take a difference from).

use std::io::Write;
use std::time::Instant;

use lb_observe::model::{BackendView, Model, View};
use lb_observe::scrape;

/// Scrapes `url` and renders its view; an error message when it cannot.
///
/// # Errors
/// The scrape failed (refused, timeout, not 200) or the answer is not Prometheus text.
pub fn status(url: &str) -> Result<String, String> {
    // The defaults (connect 2 s, 5 s in all) suit a person waiting at a prompt.
    let text = scrape::fetch(url, &scrape::Options::default()).map_err(|e| e.to_string())?;
    let samples =
        lb_observe::parse::parse(&text).map_err(|e| format!("{url}: not metrics text: {e}"))?;
    let mut model = Model::new();
    // The instant only orders scrapes; a single one needs no real clock.
    model.ingest(samples, Instant::now());
    model
        .view()
        .map(render)
        .ok_or_else(|| format!("{url}: no view"))
}

fn health(backend: &BackendView) -> &'static str {
    match backend.healthy {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "?",
    }
}

/// `view` as a summary line and an aligned table, one row per backend.
pub fn render(view: &View) -> String {
    let t = &view.totals;
    let error = |e: Option<f64>| e.map_or_else(|| "-".to_owned(), |e| format!("{e:.1}%"));
    let mut out = format!(
        "{} backends, {} healthy; {} requests, {} errors since start; {} client connections",
        t.backends,
        t.healthy,
        t.requests_total,
        error(t.error_pct),
        t.client_connections
    );
    if t.http2_connections > 0.0 {
        out.push_str(&format!(
            " ({} over HTTP/2, with {} streams open)",
            t.http2_connections, t.http2_streams
        ));
    }
    out.push('\n');
    if !t.clients_closed.is_empty() {
        let reasons: Vec<String> = (t.clients_closed.iter())
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        out.push_str(&format!(
            "HTTP/2 client connections closed for what the client did, since start: {}\n",
            reasons.join(", ")
        ));
    }
    if t.http2_streams_refused > 0.0 {
        out.push_str(&format!(
            "HTTP/2 streams refused for want of room for their request heads \
             (server.http2.max_buffered_head_bytes), since start: {}\n",
            t.http2_streams_refused
        ));
    }
    let header = [
        "BACKEND",
        "HEALTH",
        "BREAKER",
        "IN-FLIGHT",
        "REQUESTS",
        "ERRORS",
        "WEIGHT",
    ];
    let rows: Vec<[String; 7]> = view
        .backends
        .iter()
        .map(|b| {
            [
                b.name.clone(),
                health(b).to_owned(),
                b.breaker.label().to_owned(),
                b.in_flight.to_string(),
                b.requests_total.to_string(),
                error(b.error_pct),
                b.weight.to_string(),
            ]
        })
        .collect();
    out.push_str(&crate::render::columns(&header, &rows));
    out
}

/// Runs `status` for `url`: the table on `out` and exit 0, or the error on `err` and exit 1.
pub fn run(url: &str, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match status(url) {
        Ok(table) => {
            let _ = out.write_all(table.as_bytes());
            crate::cli::EXIT_OK
        }
        Err(error) => {
            let _ = writeln!(err, "error: cannot read the daemon's metrics: {error}");
            crate::cli::EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_recorded_demo() {
        let text = include_str!("../../lb-observe/tests/fixtures/demo3_down.txt");
        let mut model = Model::new();
        model.ingest(lb_observe::parse::parse(text).unwrap(), Instant::now());
        let table = render(model.view().unwrap());
        // demo3_down.txt: demo-1 answered 6 × 200 and 1 × 500; demo-3 is down.
        let expected = "\
3 backends, 2 healthy; 16 requests, 6.2% errors since start; 0 client connections
BACKEND  HEALTH  BREAKER  IN-FLIGHT  REQUESTS  ERRORS  WEIGHT
demo-1   up      closed   0          7         14.3%   1
demo-2   up      closed   0          6         0.0%    1
demo-3   DOWN    closed   0          3         0.0%    1
";
        assert_eq!(table, expected);
    }

    #[test]
    fn http2_clients_closed_and_streams_refused_get_lines_of_their_own() {
        let text = format!(
            "{}lb_http2_connections_closed_total{{reason=\"rapid_reset\"}} 2\n\
             lb_http2_connections_closed_total{{reason=\"data_flood\"}} 0\n\
             lb_http2_connections_closed_total{{reason=\"protocol_error\"}} 1\n\
             lb_http2_streams_refused_total 4\n",
            include_str!("../../lb-observe/tests/fixtures/demo3_down.txt")
        );
        let mut model = Model::new();
        model.ingest(lb_observe::parse::parse(&text).unwrap(), Instant::now());
        let table = render(model.view().unwrap());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1],
            "HTTP/2 client connections closed for what the client did, since start: \
             rapid_reset 2, protocol_error 1"
        );
        assert_eq!(
            lines[2],
            "HTTP/2 streams refused for want of room for their request heads \
             (server.http2.max_buffered_head_bytes), since start: 4"
        );
        assert!(lines[3].starts_with("BACKEND"), "{table}");
    }

    #[test]
    fn http2_connections_and_streams_join_the_first_line_when_there_are_any() {
        let text = format!(
            "{}lb_http2_client_connections 2\nlb_http2_client_streams 7\n",
            include_str!("../../lb-observe/tests/fixtures/demo3_down.txt")
        );
        let mut model = Model::new();
        model.ingest(lb_observe::parse::parse(&text).unwrap(), Instant::now());
        let table = render(model.view().unwrap());
        assert!(
            table.starts_with(
                "3 backends, 2 healthy; 16 requests, 6.2% errors since start; \
                 0 client connections (2 over HTTP/2, with 7 streams open)\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn an_unreachable_daemon_is_exit_1_with_a_message() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&format!("http://{addr}/metrics"), &mut out, &mut err);
        assert_eq!(code, crate::cli::EXIT_FAILED);
        assert!(out.is_empty());
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with("error: cannot read the daemon's metrics: "),
            "{err}"
        );
    }
}
