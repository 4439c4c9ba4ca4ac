//! Frames drawn into `TestBackend` at 80×24 and 160×48, read back as text.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use lb_observe::parse::parse;

// Scrapes recorded from `lb --demo`; they live beside the model they were recorded for.
const SCRAPE1: &str = include_str!("../../../lb-observe/tests/fixtures/scrape1.txt");
const SCRAPE2: &str = include_str!("../../../lb-observe/tests/fixtures/scrape2.txt");
const DEMO3_DOWN: &str = include_str!("../../../lb-observe/tests/fixtures/demo3_down.txt");
const URL: &str = "http://127.0.0.1:9090/metrics";

fn model(scrapes: &[&str]) -> Model {
    let start = Instant::now();
    let mut model = Model::new();
    for (i, text) in scrapes.iter().enumerate() {
        model.ingest(
            parse(text).unwrap(),
            start + Duration::from_secs(4 * i as u64),
        );
    }
    model
}

fn screen<'a>(model: &'a Model, connection: &'a Connection) -> Screen<'a> {
    Screen {
        url: URL,
        model,
        connection,
        last_scrape_age: Some(Duration::from_millis(300)),
        selected: 0,
        paused: false,
        help: false,
        admin: false,
        status: None,
    }
}

/// Draws `screen` at `width`×`height` and returns the buffer's lines.
fn render(screen: &Screen, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, screen)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// The table row of backend `name` (selected or not).
fn row<'a>(lines: &'a [String], name: &str) -> &'a str {
    let plain = format!("│  {name} ");
    let selected = format!("│▶ {name} ");
    lines
        .iter()
        .find(|l| l.contains(&plain) || l.contains(&selected))
        .unwrap_or_else(|| panic!("no row for {name} in\n{}", lines.join("\n")))
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
}

/// Connections closed for what their HTTP/2 client did show in the header while it happens,
/// and not otherwise.
#[test]
fn http2_clients_closed_show_while_it_happens() {
    let closed = |count: u32| {
        format!("lb_http2_connections_closed_total{{reason=\"rapid_reset\"}} {count}\n")
    };
    let attacked = model(&[
        &format!("{SCRAPE1}{}", closed(1)),
        &format!("{SCRAPE2}{}", closed(4)),
    ]);
    let lines = render(&screen(&attacked, &Connection::Connected), 100, 24);
    assert!(
        line_with(&lines, "req/s").contains("h2 closed 3"),
        "{}",
        lines.join("\n")
    );
    let quiet = model(&[
        &format!("{SCRAPE1}{}", closed(4)),
        &format!("{SCRAPE2}{}", closed(4)),
    ]);
    let lines = render(&screen(&quiet, &Connection::Connected), 100, 24);
    assert!(
        !line_with(&lines, "req/s").contains("h2 closed"),
        "{}",
        lines.join("\n")
    );
}

/// HTTP/2 streams refused for want of room for their heads show in the header while it
/// happens, and not otherwise.
#[test]
fn http2_streams_refused_show_while_it_happens() {
    let refused = |count: u32| format!("lb_http2_streams_refused_total {count}\n");
    let header = |scrapes: [u32; 2]| {
        let model = model(&[
            &format!("{SCRAPE1}{}", refused(scrapes[0])),
            &format!("{SCRAPE2}{}", refused(scrapes[1])),
        ]);
        let lines = render(&screen(&model, &Connection::Connected), 100, 24);
        line_with(&lines, "req/s").to_owned()
    };
    let refusing = header([2, 7]);
    assert!(refusing.contains("h2 refused 5"), "{refusing}");
    let quiet = header([7, 7]);
    assert!(!quiet.contains("h2 refused"), "{quiet}");
}

/// HTTP/2 connections and their streams join the connection count when there are any.
#[test]
fn http2_connections_and_streams_show_beside_the_connections() {
    let h2 = "lb_http2_client_connections 2\nlb_http2_client_streams 9\n";
    let with = model(&[SCRAPE1, &format!("{SCRAPE2}{h2}")]);
    let lines = render(&screen(&with, &Connection::Connected), 100, 24);
    let totals = line_with(&lines, "req/s");
    assert!(totals.contains("conns 0 (h2 2, 9 streams)"), "{totals}");
    let without = model(&[SCRAPE1, SCRAPE2]);
    let lines = render(&screen(&without, &Connection::Connected), 100, 24);
    assert!(!line_with(&lines, "req/s").contains("h2 "), "{lines:?}");
}

#[test]
fn header_and_rows_at_80x24() {
    let model = model(&[SCRAPE1, SCRAPE2]);
    let lines = render(&screen(&model, &Connection::Connected), 80, 24);
    let all = lines.join("\n");
    // Totals from the fixtures: 52 requests in 4 s, 6 of them 5xx, all three backends healthy.
    let totals = line_with(&lines, "req/s");
    assert!(totals.contains("13.0 req/s"), "{all}");
    assert!(totals.contains("err 11.5%"), "{all}");
    assert!(totals.contains("healthy 3/3"), "{all}");
    assert!(
        totals.contains("conns 0 "),
        "totals cut at 80 columns: {all}"
    );
    assert!(line_with(&lines, "connected").contains("last scrape 0s ago"));
    for name in ["demo-1", "demo-2", "demo-3"] {
        let row = row(&lines, name);
        assert!(row.contains("● up") && row.contains("closed"), "{all}");
        assert!(
            row.trim_end().ends_with('│'),
            "row cut at 80 columns: {row}"
        );
    }
    // demo-2: 18 requests in 4 s, 2 errors (11.1%), 18 of 52 = 35% of traffic, weight 1.
    let demo2 = row(&lines, "demo-2");
    for cell in ["4.5", "11.1", "1", "35%"] {
        assert!(demo2.contains(cell), "{cell} missing: {demo2}");
    }
    assert!(all.contains("BACKEND") && all.contains("P99") && all.contains("SHARE"));
    assert!(line_with(&lines, "quit").contains("? help"));
}

#[test]
fn a_down_backend_and_the_totals_say_so() {
    let model = model(&[DEMO3_DOWN]);
    let lines = render(&screen(&model, &Connection::Connected), 80, 24);
    assert!(row(&lines, "demo-3").contains("✗ down"));
    assert!(row(&lines, "demo-1").contains("● up"));
    assert!(line_with(&lines, "healthy").contains("healthy 2/3"));
    // One scrape: no rate yet.
    assert!(
        line_with(&lines, "req/s").contains("- req/s"),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn disconnected_banner_keeps_the_last_data() {
    let model = model(&[SCRAPE1, SCRAPE2]);
    let connection = Connection::Disconnected {
        error: "127.0.0.1:9090: Connection refused".to_owned(),
        retry_in: Duration::from_secs(1),
    };
    let lines = render(&screen(&model, &connection), 80, 24);
    assert!(line_with(&lines, "lb ").contains("disconnected, retrying in 1s"));
    assert!(line_with(&lines, "backends").contains("(stale)"));
    row(&lines, "demo-1");
}

#[test]
fn before_the_first_scrape() {
    let model = Model::new();
    let lines = render(&screen(&model, &Connection::Connecting), 80, 24);
    line_with(&lines, "connecting");
    line_with(&lines, "waiting for the first scrape");
}

#[test]
fn large_terminal_shows_sparklines_for_total_and_selection() {
    let model = model(&[SCRAPE1, SCRAPE2]);
    let mut screen = screen(&model, &Connection::Connected);
    screen.selected = 1;
    let lines = render(&screen, 160, 48);
    assert!(line_with(&lines, "total req/s").contains("total req/s 13.0"));
    line_with(&lines, "total err% 11.5%");
    line_with(&lines, "demo-2 req/s 4.5");
    // The selected row is marked.
    assert!(row(&lines, "demo-2").contains("▶ demo-2"));
    // The rate sparkline has bars.
    assert!(
        lines.iter().any(|l| l.contains('█')),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn help_and_pause() {
    let model = model(&[SCRAPE1]);
    let mut screen = screen(&model, &Connection::Connected);
    screen.help = true;
    screen.paused = true;
    let lines = render(&screen, 80, 24);
    line_with(&lines, "pause / resume updates");
    line_with(&lines, "PAUSED");
}

#[test]
fn the_status_line_sits_above_the_keys() {
    let model = model(&[SCRAPE1, SCRAPE2]);
    let mut screen = screen(&model, &Connection::Connected);
    screen.admin = true;
    let plain = render(&screen, 80, 24);
    assert!(plain[23].contains("d drain  e enable"), "{}", plain[23]);
    screen.status = Some(StatusLine {
        text: "drain demo-2? y confirms, any other key cancels",
        tone: Tone::Busy,
    });
    let lines = render(&screen, 80, 24);
    assert_eq!(
        lines[22].trim_end(),
        " drain demo-2? y confirms, any other key cancels"
    );
    assert!(lines[23].contains("q quit"), "{}", lines[23]);
    // The table keeps its rows; the charts give up the line.
    row(&lines, "demo-3");
    // Without --admin the keys are not offered.
    screen.admin = false;
    assert!(!render(&screen, 80, 24)[23].contains("d drain"));
}

#[test]
fn tiny_terminals_do_not_panic() {
    let model = model(&[SCRAPE1, SCRAPE2]);
    for (w, h) in [(1, 1), (10, 5), (40, 10), (80, 8)] {
        let mut screen = screen(&model, &Connection::Connected);
        screen.help = true;
        screen.status = Some(StatusLine {
            text: "a long status line that does not fit in a tiny terminal at all",
            tone: Tone::Bad,
        });
        render(&screen, w, h);
    }
}

#[test]
fn latency_formats() {
    assert_eq!(format_latency(None), "-");
    assert_eq!(format_latency(Some(0.000_283)), "283µs");
    assert_eq!(format_latency(Some(0.095_75)), "95.8ms");
    assert_eq!(format_latency(Some(2.5)), "2.50s");
}

#[test]
fn pools_group_their_backends() {
    let text = |n: u32| {
        let mut out = String::new();
        for (backend, pool) in [("web-1", "web"), ("api-2", "api"), ("api-1", "api")] {
            out.push_str(&format!(
                "lb_backend_weight{{backend=\"{backend}\",pool=\"{pool}\"}} 1\n\
                 lb_backend_health_status{{backend=\"{backend}\"}} 1\n\
                 lb_requests_total{{method=\"GET\",status=\"200\",backend=\"{backend}\",route=\"r\"}} {n}\n"
            ));
        }
        out
    };
    let (first, second) = (text(1), text(5));
    let grouped = model(&[&first, &second]);
    let order: Vec<&str> = (grouped.view().unwrap().backends.iter())
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(order, ["api-1", "api-2", "web-1"]);
    let connection = Connection::Connected;
    let lines = render(&screen(&grouped, &connection), 100, 24);
    let header = lines
        .iter()
        .find(|l| l.contains("BACKEND"))
        .expect("header");
    assert!(
        header.contains("POOL") && header.find("POOL") < header.find("BACKEND"),
        "{header}"
    );
    let api_1 = lines
        .iter()
        .find(|l| l.contains("api-1"))
        .expect("api-1 row");
    let api_2 = lines
        .iter()
        .find(|l| l.contains("api-2"))
        .expect("api-2 row");
    let web_1 = lines
        .iter()
        .find(|l| l.contains("web-1"))
        .expect("web-1 row");
    assert!(
        api_1.contains(" api ") && !api_2.contains(" api "),
        "{api_1}\n{api_2}"
    );
    assert!(web_1.contains(" web "), "{web_1}");
    // One pool (the flat form): no POOL column.
    let one = model(&[SCRAPE1, SCRAPE2]);
    let lines = render(&screen(&one, &connection), 100, 24);
    assert!(!lines.iter().any(|l| l.contains("POOL")));
}
