//! Drain and enable from the dashboard: the keys' state (pure, tested without a terminal) and
//! the worker thread that makes the admin calls.
//!
//! `d` or `e` on the selected backend asks first (`drain demo-2? y confirms`): a dashboard is
//! often left open on a production daemon, and one stray key must not take a backend out of
//! rotation. `y` puts the request in an outbox the loop hands to the worker; the answer comes
//! back over a channel, stamped with when it arrived, and becomes the status line. One request
//! is in flight at a time, and the calls run on their own thread under the admin client's
//! timeouts, so a daemon that hangs never freezes the keys or the drawing. Without `--admin`
//! the keys say so instead of doing anything.

use std::sync::mpsc::{Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use lb_observe::admin::{AdminClient, BackendStatus, Health, printable};

use crate::ui::{StatusLine, Tone};

/// How long a result or notice stays on the status line.
pub const SHOW_FOR: Duration = Duration::from_secs(10);

/// What a key asks the admin API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /backends/{name}/drain`.
    Drain,
    /// `POST /backends/{name}/enable`.
    Enable,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Enable => "enable",
        }
    }
}

/// One admin call for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub action: Action,
    /// To which backend (the name the metrics gave it).
    pub backend: String,
}

/// Where the keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Nothing asked.
    Idle,
    /// Asked `y` to confirm this.
    Confirming(Request),
    /// Sent; waiting for the answer.
    Pending(Request),
}

/// The status line's text, and until when it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    text: String,
    tone: Tone,
    /// `None` while a question or a call waits: it shows until answered.
    until: Option<Instant>,
}

/// The admin keys' state.
#[derive(Debug)]
pub struct AdminKeys {
    /// An admin URL was given.
    configured: bool,
    phase: Phase,
    shown: Option<Shown>,
    /// A confirmed request the loop has not taken yet.
    outbox: Option<Request>,
}

impl AdminKeys {
    /// The state before any key; `configured` when the dashboard has an admin client.
    pub fn new(configured: bool) -> Self {
        Self {
            configured,
            phase: Phase::Idle,
            shown: None,
            outbox: None,
        }
    }

    /// An admin client is configured.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// A question waits for `y`: the next key answers it.
    pub fn confirming(&self) -> bool {
        matches!(self.phase, Phase::Confirming(_))
    }

    fn show(&mut self, text: String, tone: Tone, until: Option<Instant>) {
        self.shown = Some(Shown { text, tone, until });
    }

    /// `d` or `e` pressed at `now` with `selected` the selected backend's name, if any.
    pub fn ask(&mut self, action: Action, selected: Option<&str>, now: Instant) {
        let verb = action.verb();
        if !self.configured {
            let text =
                format!("{verb}: the admin API is not configured (start lb-tui with --admin URL)");
            return self.show(text, Tone::Bad, Some(now + SHOW_FOR));
        }
        if let Phase::Pending(request) = &self.phase {
            let text = format!(
                "busy: still waiting for {} {}",
                request.action.verb(),
                printable(&request.backend)
            );
            return self.show(text, Tone::Busy, None);
        }
        let Some(backend) = selected else {
            let text = format!("{verb}: no backend selected (waiting for the first scrape)");
            return self.show(text, Tone::Bad, Some(now + SHOW_FOR));
        };
        let text = format!(
            "{verb} {}? y confirms, any other key cancels",
            printable(backend)
        );
        self.show(text, Tone::Busy, None);
        self.phase = Phase::Confirming(Request {
            action,
            backend: backend.to_owned(),
        });
    }

    /// The key that answers a question, at `now`: `y` sends the request, anything else cancels.
    pub fn answer(&mut self, yes: bool, now: Instant) {
        let Phase::Confirming(request) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let what = format!("{} {}", request.action.verb(), printable(&request.backend));
        if yes {
            self.show(format!("{what}…"), Tone::Busy, None);
            self.outbox = Some(request.clone());
            self.phase = Phase::Pending(request);
        } else {
            self.show(
                format!("{what}: cancelled"),
                Tone::Info,
                Some(now + SHOW_FOR),
            );
        }
    }

    /// The confirmed request, once, for the loop to hand to the worker.
    pub fn take_request(&mut self) -> Option<Request> {
        self.outbox.take()
    }

    /// The worker's answer to `request`, received at `at`: the backend as the daemon now sees
    /// it, or why the call failed.
    pub fn on_result(
        &mut self,
        request: &Request,
        result: Result<BackendStatus, String>,
        at: Instant,
    ) {
        if self.phase == Phase::Pending(request.clone()) {
            self.phase = Phase::Idle;
        }
        let name = printable(&request.backend);
        let (text, tone) = match (request.action, result) {
            (Action::Drain, Ok(b)) if b.drain_done => (
                format!("{name} drained: no new requests, none in flight"),
                Tone::Good,
            ),
            (Action::Drain, Ok(b)) => (
                format!(
                    "{name} draining: no new requests; {} in flight will finish",
                    b.in_flight
                ),
                Tone::Good,
            ),
            (Action::Enable, Ok(b)) if b.health != Health::Healthy => (
                format!("{name} enabled: takes new requests once healthy"),
                Tone::Good,
            ),
            (Action::Enable, Ok(_)) => (format!("{name} enabled: takes new requests"), Tone::Good),
            (action, Err(error)) => (
                format!("{} {name} failed: {error}", action.verb()),
                Tone::Bad,
            ),
        };
        self.show(text, tone, Some(at + SHOW_FOR));
    }

    /// What the status line shows at `now`, if anything.
    pub fn line(&self, now: Instant) -> Option<StatusLine<'_>> {
        let shown = self.shown.as_ref()?;
        if shown.until.is_some_and(|until| now >= until) {
            return None;
        }
        Some(StatusLine {
            text: &shown.text,
            tone: shown.tone,
        })
    }
}

/// An answer from the worker: the request, its outcome, when it arrived.
pub type Answer = (Request, Result<BackendStatus, String>, Instant);

/// Makes each request received on `requests` with `client` and sends back the answer, until
/// either channel closes.
pub fn spawn_worker(client: AdminClient, requests: Receiver<Request>, answers: Sender<Answer>) {
    thread::spawn(move || {
        for request in requests {
            let result = match request.action {
                Action::Drain => client.drain(&request.backend),
                Action::Enable => client.enable(&request.backend),
            };
            let answer = (request, result.map_err(|e| e.to_string()), Instant::now());
            if answers.send(answer).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_observe::admin::BreakerState;

    fn status(in_flight: u64, drain_done: bool) -> BackendStatus {
        BackendStatus {
            name: "demo-2".into(),
            pool: None,
            address: "127.0.0.1:8002".into(),
            weight: 1,
            configured_weight: 1,
            max_connections: 1000,
            health: Health::Healthy,
            breaker: BreakerState::Closed,
            in_flight,
            drained: true,
            drain_done,
            overrides: Vec::new(),
        }
    }

    fn text(keys: &AdminKeys, now: Instant) -> Option<String> {
        keys.line(now).map(|line| line.text.to_owned())
    }

    #[test]
    fn without_admin_the_keys_say_so() {
        let now = Instant::now();
        let mut keys = AdminKeys::new(false);
        keys.ask(Action::Drain, Some("demo-2"), now);
        assert!(!keys.confirming());
        assert_eq!(keys.take_request(), None);
        let line = keys.line(now).unwrap();
        assert!(
            line.text.contains("admin API is not configured"),
            "{}",
            line.text
        );
        assert_eq!(line.tone, Tone::Bad);
        // The notice goes away by itself.
        assert_eq!(text(&keys, now + SHOW_FOR), None);
    }

    #[test]
    fn drain_asks_then_sends_once_then_shows_the_answer() {
        let now = Instant::now();
        let mut keys = AdminKeys::new(true);
        keys.ask(Action::Drain, Some("demo-2"), now);
        assert!(keys.confirming());
        assert_eq!(keys.take_request(), None, "nothing is sent before y");
        assert_eq!(
            text(&keys, now + SHOW_FOR * 10).as_deref(),
            Some("drain demo-2? y confirms, any other key cancels"),
            "a question does not time out"
        );
        keys.answer(true, now);
        let request = keys.take_request().expect("sent after y");
        assert_eq!(
            request,
            Request {
                action: Action::Drain,
                backend: "demo-2".into()
            }
        );
        assert_eq!(keys.take_request(), None, "sent once");
        assert_eq!(text(&keys, now).as_deref(), Some("drain demo-2…"));
        // Another key while the call is out: refused, the call stands.
        keys.ask(Action::Enable, Some("demo-1"), now);
        assert_eq!(keys.take_request(), None);
        assert!(
            text(&keys, now)
                .unwrap()
                .starts_with("busy: still waiting for drain demo-2")
        );
        let at = now + Duration::from_millis(20);
        keys.on_result(&request, Ok(status(3, false)), at);
        let line = keys.line(at).unwrap();
        assert_eq!(
            line.text,
            "demo-2 draining: no new requests; 3 in flight will finish"
        );
        assert_eq!(line.tone, Tone::Good);
        assert_eq!(text(&keys, at + SHOW_FOR), None);
        // Idle again: the next key asks.
        keys.ask(Action::Enable, Some("demo-2"), at);
        assert!(keys.confirming());
    }

    #[test]
    fn any_other_key_cancels() {
        let now = Instant::now();
        let mut keys = AdminKeys::new(true);
        keys.ask(Action::Enable, Some("demo-3"), now);
        keys.answer(false, now);
        assert!(!keys.confirming());
        assert_eq!(keys.take_request(), None);
        assert_eq!(
            text(&keys, now).as_deref(),
            Some("enable demo-3: cancelled")
        );
    }

    #[test]
    fn answers_and_failures_become_the_status_line() {
        let now = Instant::now();
        let cases = [
            (Action::Drain, Ok(status(0, true)), "demo-2 drained: no new requests, none in flight", Tone::Good),
            (Action::Enable, Ok(status(0, false)), "demo-2 enabled: takes new requests", Tone::Good),
            (
                Action::Enable,
                Ok(BackendStatus {
                    health: Health::Unhealthy,
                    ..status(0, false)
                }),
                "demo-2 enabled: takes new requests once healthy",
                Tone::Good,
            ),
            (
                Action::Drain,
                Err("no backend named \"demo-2\" (HTTP 404 from POST http://127.0.0.1:9091/backends/demo-2/drain)".to_owned()),
                "drain demo-2 failed: no backend named \"demo-2\" (HTTP 404",
                Tone::Bad,
            ),
        ];
        for (action, result, want, tone) in cases {
            let mut keys = AdminKeys::new(true);
            keys.ask(action, Some("demo-2"), now);
            keys.answer(true, now);
            let request = keys.take_request().unwrap();
            keys.on_result(&request, result, now);
            let line = keys.line(now).unwrap();
            assert!(line.text.starts_with(want), "{}", line.text);
            assert_eq!(line.tone, tone);
        }
    }

    #[test]
    fn nothing_selected_and_strange_names() {
        let now = Instant::now();
        let mut keys = AdminKeys::new(true);
        keys.ask(Action::Drain, None, now);
        assert!(!keys.confirming());
        assert!(text(&keys, now).unwrap().contains("no backend selected"));
        keys.ask(Action::Drain, Some("evil\u{1b}[2J"), now);
        assert_eq!(
            text(&keys, now).as_deref(),
            Some("drain evil\\u{1b}[2J? y confirms, any other key cancels")
        );
        keys.answer(true, now);
        assert_eq!(
            keys.take_request().unwrap().backend,
            "evil\u{1b}[2J",
            "the real name is sent"
        );
    }
}
