//! The running dashboard: a scraper thread, an admin thread, the key loop, and the terminal's
//! lifetime.
//!
//! Scraping happens on its own thread so that a daemon that hangs never freezes the keys; each
//! result arrives over a channel stamped with the `Instant` it was received, and [`App`] (the
//! part with no terminal, tested directly) turns it into model updates or a "disconnected"
//! state. Admin calls (`d` drain, `e` enable, with `--admin`) go the same way through a second
//! thread ([`crate::admin`]). The terminal is restored on every exit: normally by `TerminalGuard`'s `Drop`, and on
//! a panic by the hook `ratatui::init` installs before raw mode is entered.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use lb_observe::admin::AdminClient;
use lb_observe::model::Model;
use lb_observe::parse::parse;
use lb_observe::scrape::{self, Scraper};

use crate::admin::{self as keys, Action, AdminKeys};
use crate::ui::{self, Connection, Screen};

/// How often the screen is redrawn (and keys are polled) when nothing happens.
const TICK: Duration = Duration::from_millis(200);

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The metrics URL, e.g. `http://127.0.0.1:9090/metrics`.
    pub url: String,
    /// Time between scrapes.
    pub interval: Duration,
}

/// Parses `500ms`, `1s`, `2.5s` or a bare number of seconds.
///
/// # Errors
/// A message for anything else, or an interval under 100 ms or over an hour.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| (0.1..=3600.0).contains(s))
        .ok_or_else(|| {
            format!("`{text}` is not an interval between 100ms and 3600s (like 1s or 500ms)")
        })?;
    Ok(Duration::from_secs_f64(seconds))
}

/// What a key asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// Leave.
    Quit,
}

/// The dashboard's state outside the terminal: model, link state and key state.
#[derive(Debug)]
pub struct App {
    url: String,
    interval: Duration,
    /// The pure state fed by scrapes.
    model: Model,
    connection: Connection,
    /// When the last good scrape arrived.
    last_ok: Option<Instant>,
    selected: usize,
    paused: bool,
    help: bool,
    /// The drain and enable keys.
    admin: AdminKeys,
}

impl App {
    /// A dashboard for `options`, before any scrape; `admin` when an admin client makes the
    /// calls of `d` and `e`.
    pub fn new(options: &Options, admin: bool) -> Self {
        Self {
            url: options.url.clone(),
            interval: options.interval,
            model: Model::new(),
            connection: Connection::Connecting,
            last_ok: None,
            selected: 0,
            paused: false,
            help: false,
            admin: AdminKeys::new(admin),
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The link's state.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Takes a scrape's outcome (the body or why it failed) received at `at`. Text that does
    /// not parse counts as a failure. While paused the link state still updates but the model
    /// does not; the first scrape after a resume covers the whole pause.
    pub fn on_scrape(&mut self, body: Result<String, String>, at: Instant) {
        match body.and_then(|text| parse(&text).map_err(|e| format!("not metrics text: {e}"))) {
            Ok(samples) => {
                self.connection = Connection::Connected;
                if !self.paused {
                    self.model.ingest(samples, at);
                    self.last_ok = Some(at);
                }
            }
            Err(error) => {
                self.connection = Connection::Disconnected {
                    error,
                    retry_in: self.interval,
                };
            }
        }
    }

    /// The admin keys' state.
    pub fn admin(&mut self) -> &mut AdminKeys {
        &mut self.admin
    }

    /// The selected backend's name, once there is a view.
    fn selected_backend(&self) -> Option<&str> {
        let backends = &self.model.view()?.backends;
        let last = backends.len().checked_sub(1)?;
        Some(&backends[self.selected.min(last)].name)
    }

    /// Handles one key pressed at `now`. While a question waits (`drain demo-2?`), the key
    /// answers it: `y` confirms, any other cancels (`q` and `Esc` included; Ctrl-C still quits).
    pub fn on_key(&mut self, key: KeyEvent, now: Instant) -> Flow {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return Flow::Quit;
        }
        if self.admin.confirming() {
            self.admin.answer(key.code == KeyCode::Char('y'), now);
            return Flow::Continue;
        }
        if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
            return Flow::Quit;
        }
        if self.help {
            self.help = false;
            return Flow::Continue;
        }
        let rows = self.model.view().map_or(0, |v| v.backends.len());
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(rows.saturating_sub(1));
            }
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char(c @ ('d' | 'e')) => {
                let action = if c == 'd' {
                    Action::Drain
                } else {
                    Action::Enable
                };
                let selected = self.selected_backend().map(str::to_owned);
                self.admin.ask(action, selected.as_deref(), now);
            }
            _ => {}
        }
        Flow::Continue
    }

    /// What to draw at `now`.
    pub fn screen(&self, now: Instant) -> Screen<'_> {
        Screen {
            url: &self.url,
            model: &self.model,
            connection: &self.connection,
            last_scrape_age: self.last_ok.map(|at| now.saturating_duration_since(at)),
            selected: self.selected,
            paused: self.paused,
            help: self.help,
            admin: self.admin.configured(),
            status: self.admin.line(now),
        }
    }
}

/// A scrape's outcome and when it arrived.
type ScrapeResult = (Result<String, String>, Instant);

/// How to scrape every `interval`: a scrape may take up to one interval (at least 500 ms, so
/// a short interval does not time out a healthy daemon, and at most 5 s, so a hung one is
/// reported soon), and connecting no longer than the default connect timeout within that.
pub fn scrape_options(interval: Duration) -> scrape::Options {
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    scrape::Options {
        timeout,
        connect_timeout: timeout.min(scrape::DEFAULT_CONNECT_TIMEOUT),
        ..scrape::Options::default()
    }
}

/// Scrapes with `scraper` every `interval` until the receiver is gone.
fn spawn_scraper(scraper: Scraper, interval: Duration, results: Sender<ScrapeResult>) {
    thread::spawn(move || {
        loop {
            let started = Instant::now();
            let body = scraper.fetch().map_err(|e| e.to_string());
            if results.send((body, Instant::now())).is_err() {
                return;
            }
            thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    });
}

/// Restores the terminal when dropped, whichever way `run` leaves.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the dashboard until `q`, Esc or Ctrl-C, scraping with `scraper` and, when given,
/// draining and enabling with `admin` (both built by the caller, so that a bad URL or token is
/// reported before the terminal is taken over).
///
/// # Errors
/// A terminal error (not a TTY, a failed write). Scrape and admin failures are not errors: they
/// are shown.
pub fn run(options: &Options, scraper: Scraper, admin: Option<AdminClient>) -> std::io::Result<()> {
    let (sender, results): (Sender<ScrapeResult>, Receiver<ScrapeResult>) = mpsc::channel();
    spawn_scraper(scraper, options.interval, sender);
    let mut app = App::new(options, admin.is_some());
    let (requests, request_rx) = mpsc::channel();
    let (answer_tx, answers) = mpsc::channel();
    if let Some(client) = admin {
        keys::spawn_worker(client, request_rx, answer_tx);
    }
    // Installs the panic hook that restores the terminal, then enters raw mode.
    let mut terminal = ratatui::try_init()?;
    let _guard = TerminalGuard;
    loop {
        while let Ok((body, at)) = results.try_recv() {
            app.on_scrape(body, at);
        }
        while let Ok((request, result, at)) = answers.try_recv() {
            app.admin().on_result(&request, result, at);
        }
        if let Some(request) = app.admin().take_request() {
            // Without a client the keys never confirm a request, so there is always a worker;
            // it lives as long as this loop.
            let _ = requests.send(request);
        }
        terminal.draw(|frame| ui::draw(frame, &app.screen(Instant::now())))?;
        if !event::poll(TICK)? {
            continue;
        }
        // A resize needs nothing more: the next draw fits the new size.
        if let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
            && app.on_key(key, Instant::now()) == Flow::Quit
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Scrapes recorded from `lb --demo`; they live beside the model they were recorded for.
    const SCRAPE1: &str = include_str!("../../lb-observe/tests/fixtures/scrape1.txt");
    const SCRAPE2: &str = include_str!("../../lb-observe/tests/fixtures/scrape2.txt");

    fn app() -> App {
        app_with(false)
    }

    fn app_with(admin: bool) -> App {
        App::new(
            &Options {
                url: "http://127.0.0.1:9/metrics".into(),
                interval: Duration::from_secs(1),
            },
            admin,
        )
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("2.5s"), Ok(Duration::from_millis(2500)));
        for bad in ["", "0s", "5ms", "fast", "-1s", "NaN"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_scrape_fits_in_its_interval_within_bounds() {
        let short = scrape_options(Duration::from_millis(100));
        assert_eq!(short.timeout, Duration::from_millis(500));
        assert_eq!(short.connect_timeout, Duration::from_millis(500));
        let long = scrape_options(Duration::from_secs(60));
        assert_eq!(long.timeout, Duration::from_secs(5));
        assert_eq!(long.connect_timeout, scrape::DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn disconnects_on_errors_and_garbage_then_recovers() {
        let start = Instant::now();
        let mut app = app();
        app.on_scrape(Ok(SCRAPE1.into()), start);
        assert_eq!(app.connection(), &Connection::Connected);
        app.on_scrape(
            Err("connection refused".into()),
            start + Duration::from_secs(1),
        );
        assert!(matches!(
            app.connection(),
            Connection::Disconnected { retry_in, .. } if *retry_in == Duration::from_secs(1)
        ));
        app.on_scrape(
            Ok("<html>502 Bad Gateway</html>".into()),
            start + Duration::from_secs(2),
        );
        let Connection::Disconnected { error, .. } = app.connection() else {
            panic!("garbage accepted");
        };
        assert!(error.contains("not metrics text"), "{error}");
        // The last good data is kept, and the daemon coming back is picked up.
        assert!(app.model().view().is_some());
        app.on_scrape(Ok(SCRAPE2.into()), start + Duration::from_secs(4));
        assert_eq!(app.connection(), &Connection::Connected);
        assert_eq!(
            app.model().view().unwrap().window,
            Some(Duration::from_secs(4))
        );
        let screen = app.screen(start + Duration::from_secs(6));
        assert_eq!(screen.last_scrape_age, Some(Duration::from_secs(2)));
    }

    #[test]
    fn keys() {
        let start = Instant::now();
        let mut app = app();
        app.on_scrape(Ok(SCRAPE1.into()), start);
        assert_eq!(app.on_key(key(KeyCode::Up), start), Flow::Continue);
        assert_eq!(app.selected, 0);
        for _ in 0..5 {
            app.on_key(key(KeyCode::Down), start);
        }
        assert_eq!(app.selected, 2, "selection stops at the last of three rows");
        app.on_key(key(KeyCode::Char('?')), start);
        assert!(app.help);
        app.on_key(key(KeyCode::Char('p')), start);
        assert!(
            !app.help && !app.paused,
            "a key closes help and does nothing else"
        );
        app.on_key(key(KeyCode::Char('p')), start);
        assert!(app.paused);
        // Paused: the model does not move.
        app.on_scrape(Ok(SCRAPE2.into()), start + Duration::from_secs(1));
        assert_eq!(app.model().view().unwrap().window, None);
        assert_eq!(app.on_key(key(KeyCode::Char('q')), start), Flow::Quit);
        assert_eq!(app.on_key(key(KeyCode::Esc), start), Flow::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c, start), Flow::Quit);
    }

    #[test]
    fn d_and_e_ask_then_hand_the_request_over() {
        let start = Instant::now();
        let mut app = app_with(true);
        // Before the first scrape there is nothing to drain.
        app.on_key(key(KeyCode::Char('d')), start);
        let status = app.screen(start).status.expect("a notice");
        assert!(
            status.text.contains("no backend selected"),
            "{}",
            status.text
        );

        app.on_scrape(Ok(SCRAPE1.into()), start);
        app.on_key(key(KeyCode::Down), start);
        app.on_key(key(KeyCode::Char('d')), start);
        let screen = app.screen(start);
        assert!(screen.admin);
        assert_eq!(
            screen.status.map(|s| s.text),
            Some("drain demo-2? y confirms, any other key cancels")
        );
        // `q` answers the question (cancels) instead of quitting.
        assert_eq!(app.on_key(key(KeyCode::Char('q')), start), Flow::Continue);
        assert_eq!(app.admin().take_request(), None);
        assert_eq!(
            app.screen(start).status.map(|s| s.text),
            Some("drain demo-2: cancelled")
        );

        app.on_key(key(KeyCode::Char('e')), start);
        app.on_key(key(KeyCode::Char('y')), start);
        let request = app.admin().take_request().expect("confirmed");
        assert_eq!(
            request,
            keys::Request {
                action: Action::Enable,
                backend: "demo-2".into()
            }
        );
        let answer = Err("demo-2: connection refused".to_owned());
        app.admin().on_result(&request, answer, start);
        let status = app.screen(start).status.expect("the answer");
        assert_eq!(
            status.text,
            "enable demo-2 failed: demo-2: connection refused"
        );
        assert_eq!(status.tone, ui::Tone::Bad);
        assert_eq!(app.screen(start + keys::SHOW_FOR).status, None);

        // Ctrl-C quits even while a question waits.
        app.on_key(key(KeyCode::Char('d')), start);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c, start), Flow::Quit);
    }

    #[test]
    fn without_admin_d_says_it_is_not_configured() {
        let start = Instant::now();
        let mut app = app();
        app.on_scrape(Ok(SCRAPE1.into()), start);
        app.on_key(key(KeyCode::Char('d')), start);
        assert_eq!(app.admin().take_request(), None);
        let screen = app.screen(start);
        assert!(!screen.admin);
        let text = screen.status.expect("a notice").text;
        assert!(text.contains("admin API is not configured"), "{text}");
        assert!(text.contains("--admin URL"), "{text}");
    }
}
