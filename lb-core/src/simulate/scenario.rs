//! The validated scenario: what traffic arrives and how each backend behaves, over time.
//!
//! Values of these types have passed validation when they come from
//! [`parse_scenario`](super::parse_scenario); built by hand (tests) they are trusted as given.
//! Backends are named as in the configuration; [`Scenario::check_against`] is the one check
//! that needs the configuration too, and points at the scenario's line like every other error.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{ConfigError, ConfigErrors, closest};
use crate::net::Cidr;

/// Bodies up to this size are buffered by the daemon before the first attempt, so a retry can
/// send them again; larger ones stream through and are never retried. It mirrors lb-proxy's
/// `forward::REPLAY_BUFFER_BYTES` (lb-core cannot import the data plane).
pub const REPLAY_BUFFER_BYTES: u64 = 64 * 1024;

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it came from, named in errors of [`Scenario::check_against`].
    pub origin: String,
    /// Traffic arrives during `0..duration`; requests still in flight then are followed to
    /// their end.
    pub duration: Duration,
    /// Width of one time bucket of the report's timeline.
    pub bucket: Duration,
    /// The seed used when the command line gives none.
    pub seed: u64,
    /// The request rate over time and how arrivals are spaced.
    pub traffic: Traffic,
    /// Who sends the requests.
    pub clients: Clients,
    /// The request mix; shares are normalised to sum to 1.
    pub requests: Vec<RequestKind>,
    /// How a backend behaves unless its own entry says otherwise.
    pub defaults: Behaviour,
    /// Backends with their own behaviour or events, in file order.
    pub backends: Vec<BackendScenario>,
}

/// `traffic`: requests per second over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// The base rate: a step function through these points, or a straight line into a point
    /// marked `ramp`. The first point is at 0 s; points are in increasing time order.
    pub rate: Vec<RatePoint>,
    /// Extra rate added on top of the base during a window.
    pub bursts: Vec<Burst>,
    /// How arrivals are spaced.
    pub arrivals: Arrivals,
}

/// One point of the rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePoint {
    /// From when this rate applies.
    pub at: Duration,
    /// Requests per second.
    pub rps: f64,
    /// Reach `rps` along a straight line from the previous point, rather than stepping to it.
    pub ramp: bool,
}

/// Extra load during a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// When the burst starts.
    pub at: Duration,
    /// How long it lasts.
    pub length: Duration,
    /// Requests per second added to the base rate.
    pub rps: f64,
}

/// How arrivals are spaced in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arrivals {
    /// A Poisson process with the scheduled rate: independent clients, random gaps.
    #[default]
    Poisson,
    /// Evenly spaced at the scheduled rate: a load generator's pacing.
    Even,
}

impl Arrivals {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Arrivals::Poisson => "poisson",
            Arrivals::Even => "even",
        }
    }
}

/// `clients`: how many distinct addresses send requests, and how unevenly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clients {
    /// Distinct client addresses.
    pub count: u32,
    /// The range they are taken from, consecutively from its first address.
    pub network: Cidr,
    /// Zipf exponent of how requests spread over clients: 0 means every client sends as much
    /// as any other; 1 means the k-th busiest sends 1/k of what the busiest sends.
    pub skew: f64,
}

impl Clients {
    /// The address of client `index` (`0..count`): the network's first address plus `index`.
    pub fn address(&self, index: u32) -> IpAddr {
        match self.network.network() {
            IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).wrapping_add(index).into()),
            IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).wrapping_add(u128::from(index)).into()),
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            count: 100,
            network: Cidr::try_new(IpAddr::from([10, 0, 0, 0]), 8)
                .expect("10.0.0.0/8 is a valid range"),
            skew: 0.0,
        }
    }
}

/// One entry of the request mix.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestKind {
    /// The HTTP method; idempotent methods may be retried after they reached a backend.
    pub method: String,
    /// Relative share of requests of this kind.
    pub share: f64,
    /// Request body size; above [`REPLAY_BUFFER_BYTES`] the request is never retried, above
    /// `server.max_request_body_bytes` it is refused with 413.
    pub body_bytes: u64,
}

/// How a backend answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Time to serve one request once the backend works on it.
    pub latency: Latency,
    /// Fraction of requests answered with `error_status`, after the latency.
    pub error_rate: f64,
    /// The status of those failures (500-599).
    pub error_status: u16,
    /// Requests the backend works on at once; more wait in its queue. `None`: no limit.
    pub concurrency: Option<u32>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency: Latency::Fixed(Duration::from_millis(10)),
            error_rate: 0.0,
            error_status: 500,
            concurrency: None,
        }
    }
}

/// A latency distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Normal, cut at zero.
    Normal {
        /// The mean.
        mean: Duration,
        /// The standard deviation.
        stddev: Duration,
    },
    /// Log-normal, given by its median and 99th percentile (what dashboards show).
    LogNormal {
        /// The median.
        median: Duration,
        /// The 99th percentile; at least the median.
        p99: Duration,
    },
    /// Piecewise linear between known percentiles, `(percentile in 0..=100, value)`, sorted by
    /// percentile with non-decreasing values. Below the first and above the last point the
    /// end values hold, so give `max` for a tail.
    Percentiles(Vec<(f64, Duration)>),
}

/// One backend's entry: its behaviour (defaults filled in) and its timed events.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendScenario {
    /// The backend's name in the configuration.
    pub name: String,
    /// Where the name is written, for errors: 1-based line and column.
    pub position: Option<(u32, u32)>,
    /// How it behaves from the start.
    pub behaviour: Behaviour,
    /// What changes, in time order (file order among equal times).
    pub events: Vec<Event>,
}

/// Something that happens to a backend at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When.
    pub at: Duration,
    /// What, applied in this order.
    pub actions: Vec<Action>,
}

/// One change to a backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// The process stops: connections are refused, requests in progress are cut (reset).
    Down,
    /// The process is back.
    Up,
    /// Every latency drawn from now on is multiplied by this factor (1 restores).
    Slow(f64),
    /// A new error rate.
    ErrorRate(f64),
    /// The health endpoint passes (`true`) or fails (`false`), traffic still being served.
    Health(bool),
    /// The health endpoint alternates, failing first, every period; zero stops it (passing).
    Flap(Duration),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::config::format_duration;
        match self {
            Action::Down => f.write_str("down"),
            Action::Up => f.write_str("up"),
            Action::Slow(factor) => write!(f, "slow x{factor}"),
            Action::ErrorRate(rate) => write!(f, "error rate {}", percent(*rate)),
            Action::Health(true) => f.write_str("health endpoint passes"),
            Action::Health(false) => f.write_str("health endpoint fails"),
            Action::Flap(period) if period.is_zero() => {
                f.write_str("health endpoint stops flapping")
            }
            Action::Flap(period) => write!(
                f,
                "health endpoint flaps every {}",
                format_duration(*period)
            ),
        }
    }
}

/// `0.25` as `25%`, without needless decimals.
fn percent(rate: f64) -> String {
    let value = rate * 100.0;
    if (value - value.round()).abs() < 1e-9 {
        format!("{}%", value.round())
    } else {
        format!("{value:.2}%")
    }
}

impl Scenario {
    /// The behaviour of the backend named `name`: its entry's, else the defaults.
    pub fn behaviour(&self, name: &str) -> (&Behaviour, &[Event]) {
        match self.backends.iter().find(|b| b.name == name) {
            Some(entry) => (&entry.behaviour, &entry.events),
            None => (&self.defaults, &[]),
        }
    }

    /// Requests the traffic asks for: the scheduled rate integrated over the duration (the
    /// Poisson arrivals of a run vary around it).
    pub fn expected_requests(&self) -> f64 {
        super::traffic::RateCurve::new(&self.traffic, self.duration).total()
    }

    /// Checks that every backend the scenario names is in `backend_names` (the
    /// configuration's), so a typo does not silently leave a backend at the defaults.
    ///
    /// # Errors
    ///
    /// One error per unknown name, at the name in the scenario file, with the closest
    /// configured name as a hint.
    pub fn check_against<'a>(
        &self,
        backend_names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), ConfigErrors> {
        let known: Vec<&str> = backend_names.into_iter().collect();
        let errors: Vec<ConfigError> = self
            .backends
            .iter()
            .filter(|entry| !known.contains(&entry.name.as_str()))
            .map(|entry| ConfigError {
                file: self.origin.clone(),
                line: entry.position.map(|(line, _)| line),
                column: entry.position.map(|(_, column)| column),
                field: format!("backends.{}", entry.name),
                message: format!("the configuration has no backend named \"{}\"", entry.name),
                hint: Some(match closest(&entry.name, &known) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => format!("its backends are: {}", known.join(", ")),
                }),
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_count_up_from_the_network() {
        let v4 = Clients {
            network: "192.168.0.0/16".parse().unwrap(),
            ..Clients::default()
        };
        assert_eq!(v4.address(0), "192.168.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(v4.address(257), "192.168.1.1".parse::<IpAddr>().unwrap());
        let v6 = Clients {
            network: "2001:db8::/64".parse().unwrap(),
            ..Clients::default()
        };
        assert_eq!(v6.address(16), "2001:db8::10".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn actions_read_well() {
        let cases = [
            (Action::Down, "down"),
            (Action::Slow(10.0), "slow x10"),
            (Action::ErrorRate(0.5), "error rate 50%"),
            (Action::ErrorRate(0.0125), "error rate 1.25%"),
            (Action::Health(false), "health endpoint fails"),
            (
                Action::Flap(Duration::from_secs(10)),
                "health endpoint flaps every 10s",
            ),
            (
                Action::Flap(Duration::ZERO),
                "health endpoint stops flapping",
            ),
        ];
        for (action, text) in cases {
            assert_eq!(action.to_string(), text);
        }
    }

    #[test]
    fn unknown_backends_are_pointed_at() {
        let scenario = Scenario {
            origin: "s.yaml".into(),
            duration: Duration::from_secs(1),
            bucket: Duration::from_secs(1),
            seed: 1,
            traffic: Traffic {
                rate: vec![],
                bursts: vec![],
                arrivals: Arrivals::Even,
            },
            clients: Clients::default(),
            requests: vec![],
            defaults: Behaviour::default(),
            backends: vec![BackendScenario {
                name: "api-4".into(),
                position: Some((7, 3)),
                behaviour: Behaviour::default(),
                events: vec![],
            }],
        };
        let errors = scenario
            .check_against(["api-1", "api-2"])
            .expect_err("api-4 is not configured");
        assert_eq!(
            errors.to_string(),
            "s.yaml:7:3: backends.api-4: the configuration has no backend named \"api-4\" \
             (hint: did you mean \"api-1\"?)"
        );
        assert!(scenario.check_against(["api-4"]).is_ok());
    }
}
