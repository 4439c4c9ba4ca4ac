//! Drawing one frame from the model: a header with fleet totals and the connection state, a
//! table with a row per backend, rate and error sparklines for the fleet and the selected
//! backend, a status line for admin actions when there is one, and a key line. No IO: everything it shows comes in through [`Screen`], so the
//! tests draw into ratatui's `TestBackend` and read the buffer as text.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use lb_observe::model::{BackendView, Breaker, Model, Series};

#[cfg(test)]
mod tests;

/// The state of the link to the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// No scrape has finished yet.
    Connecting,
    /// The last scrape succeeded.
    Connected,
    /// The last scrape failed; the next one is due in `retry_in`.
    Disconnected {
        /// Why, in one line.
        error: String,
        /// The scrape interval.
        retry_in: Duration,
    },
}

/// How a status line reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Plain news (a cancelled question).
    Info,
    /// Waiting: a question, or a call on its way.
    Busy,
    /// Done as asked.
    Good,
    /// Failed, or cannot be done.
    Bad,
}

/// One line of news from the admin keys, above the key line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine<'a> {
    /// What happened, in one line.
    pub text: &'a str,
    /// Its colour.
    pub tone: Tone,
}

/// Everything a frame shows.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    /// The metrics URL.
    pub url: &'a str,
    /// The dashboard state.
    pub model: &'a Model,
    /// The link's state.
    pub connection: &'a Connection,
    /// Time since the last successful scrape, if any.
    pub last_scrape_age: Option<Duration>,
    /// Index of the selected backend row.
    pub selected: usize,
    /// Updates are paused.
    pub paused: bool,
    /// The help overlay is open.
    pub help: bool,
    /// The admin API is configured: the key line offers `d` and `e`.
    pub admin: bool,
    /// The admin keys' news, if any.
    pub status: Option<StatusLine<'a>>,
}

const GREEN: Style = Style::new().fg(Color::Green);
const RED: Style = Style::new().fg(Color::Red);
const YELLOW: Style = Style::new().fg(Color::Yellow);
const DIM: Style = Style::new().fg(Color::DarkGray);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, screen: &Screen) {
    let backends = screen.model.view().map_or(0, |v| v.backends.len());
    let table_height = u16::try_from(backends)
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let [header, table, charts, status, keys] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(table_height.max(4)),
        Constraint::Min(0),
        Constraint::Length(u16::from(screen.status.is_some())),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, screen);
    draw_table(frame, table, screen);
    draw_charts(frame, charts, screen);
    if let Some(line) = screen.status {
        draw_status(frame, status, line);
    }
    draw_keys(frame, keys, screen);
    if screen.help {
        draw_help(frame, frame.area());
    }
}

/// Seconds as `850µs`, `12.3ms` or `1.25s`; `-` for none.
pub fn format_latency(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 0.001 => format!("{:.0}µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

fn format_option(value: Option<f64>, decimals: usize, suffix: &str) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}{suffix}"))
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn draw_header(frame: &mut Frame, area: Rect, screen: &Screen) {
    let mut status = vec![
        Span::styled("lb ", BOLD),
        Span::raw(screen.url),
        Span::raw("  "),
    ];
    let mut detail = None;
    match screen.connection {
        Connection::Connecting => status.push(Span::styled("connecting…", YELLOW)),
        Connection::Connected => status.push(Span::styled("● connected", GREEN)),
        Connection::Disconnected { error, retry_in } => {
            status.push(Span::styled(
                format!("disconnected, retrying in {}", format_duration(*retry_in)),
                RED.add_modifier(Modifier::BOLD),
            ));
            detail = Some(Span::styled(format!("  {error}"), DIM));
        }
    }
    if let Some(age) = screen.last_scrape_age {
        status.push(Span::raw(format!("  last scrape {}s ago", age.as_secs())));
    }
    if screen.paused {
        status.push(Span::styled(
            "  PAUSED",
            YELLOW.add_modifier(Modifier::BOLD),
        ));
    }
    // The error goes last: on a narrow terminal it is the part worth cutting.
    status.extend(detail);
    let totals = match screen.model.view() {
        None => Line::from(Span::styled("no data yet", DIM)),
        Some(view) => {
            let t = &view.totals;
            let health_style = if t.healthy < t.backends { RED } else { GREEN };
            let mut spans = vec![
                Span::styled(format!("{} req/s", format_option(t.rate, 1, "")), BOLD),
                Span::raw("  err "),
                Span::styled(format_option(t.error_pct, 1, "%"), error_style(t.error_pct)),
                Span::raw(format!(
                    "  p50 {}  p99 {}  healthy ",
                    format_latency(t.p50),
                    format_latency(t.p99)
                )),
                Span::styled(format!("{}/{}", t.healthy, t.backends), health_style),
                Span::raw(format!("  conns {}", t.client_connections)),
            ];
            if t.http2_connections > 0.0 {
                spans.push(Span::raw(format!(
                    " (h2 {}, {} streams)",
                    t.http2_connections, t.http2_streams
                )));
            }
            // Connections closed for what their HTTP/2 client did: shown while it happens.
            if let Some(closed) = t.clients_closed_recently.filter(|closed| *closed > 0.0) {
                spans.push(Span::styled(format!("  h2 closed {closed}"), YELLOW));
            }
            // Streams refused for want of room for their heads: shown while it happens.
            if let Some(refused) =
                (t.http2_streams_refused_recently).filter(|refused| *refused > 0.0)
            {
                spans.push(Span::styled(format!("  h2 refused {refused}"), YELLOW));
            }
            Line::from(spans)
        }
    };
    let header =
        Paragraph::new(vec![Line::from(status), totals]).block(Block::bordered().title(" lb-tui "));
    frame.render_widget(header, area);
}

fn error_style(error_pct: Option<f64>) -> Style {
    match error_pct {
        Some(e) if e >= 5.0 => RED,
        Some(e) if e > 0.0 => YELLOW,
        _ => Style::new(),
    }
}

fn health_cell(healthy: Option<bool>) -> Cell<'static> {
    match healthy {
        Some(true) => Cell::from("● up").style(GREEN),
        Some(false) => Cell::from("✗ down").style(RED.add_modifier(Modifier::BOLD)),
        None => Cell::from("? n/a").style(DIM),
    }
}

fn breaker_cell(breaker: Breaker) -> Cell<'static> {
    let style = match breaker {
        Breaker::Closed => GREEN,
        Breaker::Open => RED.add_modifier(Modifier::BOLD),
        Breaker::HalfOpen => YELLOW,
        Breaker::Unknown => DIM,
    };
    Cell::from(breaker.label()).style(style)
}

/// A backend's row; `pool` is its pool's name on the first row of the pool's group (blank on
/// the others), `None` when the fleet has one pool (no column).
fn backend_row(b: &BackendView, pool: Option<String>) -> Row<'static> {
    let pool = pool.map(|name| Cell::from(name).style(BOLD));
    Row::new(pool.into_iter().chain([
        Cell::from(b.name.clone()),
        health_cell(b.healthy),
        breaker_cell(b.breaker),
        Cell::from(format!("{}", b.in_flight)),
        Cell::from(format_option(b.rate, 1, "")),
        Cell::from(format_option(b.error_pct, 1, "")).style(error_style(b.error_pct)),
        Cell::from(format_latency(b.p50)),
        Cell::from(format_latency(b.p99)),
        Cell::from(format!("{}", b.weight)),
        Cell::from(format_option(b.share, 0, "%")),
    ]))
}

fn draw_table(frame: &mut Frame, area: Rect, screen: &Screen) {
    let stale = matches!(screen.connection, Connection::Disconnected { .. })
        && screen.model.view().is_some();
    let title = if stale {
        " backends (stale) "
    } else {
        " backends "
    };
    let block = Block::bordered().title(title);
    let Some(view) = screen.model.view() else {
        let waiting = Paragraph::new(Span::styled("waiting for the first scrape…", DIM));
        frame.render_widget(waiting.block(block), area);
        return;
    };
    // Pools group their backends (the model orders rows by pool): a POOL column names each
    // group once, shown only when there is more than one pool.
    let pools: std::collections::BTreeSet<&str> = (view.backends.iter())
        .filter_map(|b| b.pool.as_deref())
        .collect();
    let grouped = pools.len() > 1;
    let columns = [
        "BACKEND", "HEALTH", "BREAKER", "INFL", "REQ/S", "ERR%", "P50", "P99", "WEIGHT", "SHARE",
    ];
    let header = Row::new(grouped.then_some("POOL").into_iter().chain(columns)).style(BOLD);
    // The name column is as wide as the longest name (within reason); slack goes to the right.
    let longest = view.backends.iter().map(|b| b.name.chars().count()).max();
    let name_width = u16::try_from(longest.unwrap_or(0).clamp(7, 24)).unwrap_or(24);
    let pool_width = pools
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 16);
    let pool_column = grouped.then(|| Constraint::Length(u16::try_from(pool_width).unwrap_or(16)));
    let widths: Vec<Constraint> = pool_column
        .into_iter()
        .chain([
            Constraint::Length(name_width),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(5),
        ])
        .collect();
    let rows = view.backends.iter().enumerate().map(|(index, b)| {
        let first = index == 0 || view.backends[index - 1].pool != b.pool;
        let pool = grouped.then(|| match first {
            true => b.pool.clone().unwrap_or_default(),
            false => String::new(),
        });
        backend_row(b, pool)
    });
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(
        (!view.backends.is_empty()).then(|| screen.selected.min(view.backends.len() - 1)),
    );
    frame.render_stateful_widget(table, area, &mut state);
}

/// The last `width` points of `values`, scaled so fractional rates still show.
fn sparkline_points(values: &std::collections::VecDeque<f64>, width: u16) -> Vec<u64> {
    let skip = values.len().saturating_sub(usize::from(width));
    values
        .iter()
        .skip(skip)
        .map(|v| (v.max(0.0) * 100.0).round() as u64)
        .collect()
}

fn draw_series(frame: &mut Frame, area: Rect, name: &str, series: Option<&Series>) {
    let [rate_area, error_area] =
        Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(area);
    let empty = Series::default();
    let series = series.unwrap_or(&empty);
    let last = |q: &std::collections::VecDeque<f64>| q.back().copied();
    let panels = [
        (
            rate_area,
            "req/s",
            &series.rate,
            format_option(last(&series.rate), 1, ""),
            GREEN,
        ),
        (
            error_area,
            "err%",
            &series.error_pct,
            format_option(last(&series.error_pct), 1, "%"),
            RED,
        ),
    ];
    for (panel, what, values, now, style) in panels {
        let block = Block::bordered().title(format!(" {name} {what} {now} "));
        let width = block.inner(panel).width;
        let mut sparkline = Sparkline::default()
            .block(block)
            .style(style)
            .data(sparkline_points(values, width));
        if what == "err%" {
            // Error share on an absolute 0-100% scale: a lone error must not fill the panel.
            sparkline = sparkline.max(100 * 100);
        }
        frame.render_widget(sparkline, panel);
    }
}

fn draw_charts(frame: &mut Frame, area: Rect, screen: &Screen) {
    if area.height < 3 {
        return;
    }
    let history = screen.model.history();
    let selected = screen
        .model
        .view()
        .and_then(|v| {
            v.backends
                .get(screen.selected.min(v.backends.len().saturating_sub(1)))
        })
        .map(|b| b.name.as_str());
    let Some(name) = selected else {
        draw_series(frame, area, "total", Some(&history.total));
        return;
    };
    let [total, backend] =
        Layout::vertical([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(area);
    draw_series(frame, total, "total", Some(&history.total));
    draw_series(frame, backend, name, history.backends.get(name));
}

fn draw_status(frame: &mut Frame, area: Rect, line: StatusLine) {
    let style = match line.tone {
        Tone::Info => Style::new(),
        Tone::Busy => YELLOW,
        Tone::Good => GREEN,
        Tone::Bad => RED.add_modifier(Modifier::BOLD),
    };
    let text = Line::from(vec![Span::raw(" "), Span::styled(line.text, style)]);
    frame.render_widget(Paragraph::new(text), area);
}

fn draw_keys(frame: &mut Frame, area: Rect, screen: &Screen) {
    let mut spans = vec![Span::styled(" q quit  ↑/↓ select  p pause  ? help", DIM)];
    if screen.admin {
        spans.push(Span::styled("  d drain  e enable", DIM));
    }
    if screen.paused {
        spans.push(Span::styled("   paused: p resumes", YELLOW));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

const HELP: &[&str] = &[
    "q, Esc   quit",
    "↑, ↓     select a backend (its sparklines are the lower pair)",
    "p        pause / resume updates",
    "d, e     drain / enable the selected backend (with --admin; y confirms)",
    "?        this help",
    "",
    "HEALTH   ● up / ✗ down from active health checks",
    "BREAKER  closed, open (skipped) or half-open (probing)",
    "INFL     requests in flight to the backend now",
    "REQ/S    requests per second since the previous scrape",
    "ERR%     share of those answered 5xx or cut off",
    "P50/P99  latency quantiles from histogram bucket deltas",
    "WEIGHT   configured weight; SHARE its share of traffic",
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = area.width.min(66);
    let height = area
        .height
        .min(u16::try_from(HELP.len()).unwrap_or(u16::MAX) + 2);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let text: Vec<Line> = HELP.iter().map(|l| Line::raw(*l)).collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" help: any key closes ")),
        popup,
    );
}
