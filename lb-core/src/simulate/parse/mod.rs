//! Scenario files through the configuration's own pipeline: the positioned tree of stage one,
//! the same walker and value readers, every problem collected as `file:line:col: field: message`.

use std::path::Path;
use std::time::Duration;

use super::scenario::{
    Arrivals, Behaviour, Burst, Clients, RatePoint, RequestKind, Scenario, Traffic,
};
use super::traffic::RateCurve;

mod backends;
mod readers;

use crate::config::node::{self, Node, Spanned};
use crate::config::walk::{Problem, Section, Walker, boolean, duration, int, text};
use crate::config::{ConfigErrors, Format, decode, document_error, format_duration};
use crate::net::Cidr;
use backends::{backends, behaviour};
use readers::{instant, list, number, positive, required, size};

/// The most requests a scenario may ask for (its rate integrated over its duration): about a
/// minute and a half of simulation.
pub const MAX_REQUESTS: f64 = 100_000_000.0;
/// The most time buckets a report holds.
pub const MAX_BUCKETS: u64 = 1000;
/// The longest scenario.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The highest rate, base or burst.
pub const MAX_RPS: f64 = 1_000_000.0;
/// The most distinct clients.
pub const MAX_CLIENTS: i128 = 1_000_000;

const EMPTY_HINT: &str = "it needs at least `duration` and `traffic`";
const TOP: [&str; 8] = [
    "duration", "bucket", "seed", "traffic", "clients", "requests", "defaults", "backends",
];
const BEHAVIOUR: [&str; 4] = ["latency", "error_rate", "error_status", "concurrency"];

/// Parses and validates scenario text; `origin` names the file in errors.
///
/// # Errors
///
/// Every problem found, ordered by position: one syntax error, or all validation errors.
///
/// # Example
///
/// ```
/// use lb_core::config::Format;
/// use lb_core::simulate::parse_scenario;
///
/// let scenario = parse_scenario("duration: 1m\ntraffic:\n  rate: 100\n", Format::Yaml, "s.yaml")
///     .unwrap();
/// assert_eq!(scenario.bucket.as_secs(), 1); // a sixtieth of the duration by default
///
/// let errors = parse_scenario("duration: 1m\ntraffic:\n  rate: -5\n", Format::Yaml, "s.yaml")
///     .unwrap_err();
/// assert_eq!(errors.to_string(), "s.yaml:3:9: traffic.rate: must be at least 0, found -5");
/// ```
pub fn parse_scenario(
    source: &str,
    format: Format,
    origin: &str,
) -> Result<Scenario, ConfigErrors> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if source.trim().is_empty() {
        return Err(document_error(
            origin,
            "the file is empty",
            Some(EMPTY_HINT),
        ));
    }
    let root = node::load(source, format, origin)?;
    build(&root, origin)
}

/// Parses and validates the raw contents of the scenario file at `path` (the extension picks
/// YAML or JSON). The file is not read here.
///
/// # Errors
///
/// One error for an unknown extension, an empty file or bytes that are not UTF-8 text;
/// otherwise as [`parse_scenario`].
pub fn parse_scenario_bytes(bytes: &[u8], path: &Path) -> Result<Scenario, ConfigErrors> {
    let (text, format, origin) = decode(bytes, path, EMPTY_HINT)?;
    parse_scenario(text, format, &origin)
}

fn build(root: &Spanned, origin: &str) -> Result<Scenario, ConfigErrors> {
    let mut w = Walker::new(origin);
    if !matches!(root.node, Node::Map(_)) {
        let problem = Problem::new(format!(
            "expected a mapping of sections, found {}",
            root.node.kind()
        ))
        .hint("start with `duration:`");
        w.report(root.pos, "", problem);
        return Err(ConfigErrors(w.errors));
    }
    let top = w.section(Some(root), "", &TOP);
    let length = required(&mut w, &top, "duration", Duration::from_secs(60), |node| {
        let value = duration(true)(node)?;
        if value > MAX_DURATION {
            return Err(Problem::new(format!(
                "must be at most {}, found {}",
                format_duration(MAX_DURATION),
                format_duration(value)
            )));
        }
        Ok(value)
    });
    let end = length.ok.then_some(length.value);
    let default_bucket = Duration::from_millis(
        u64::try_from(length.value.as_millis().div_ceil(60))
            .unwrap_or(1)
            .max(1),
    );
    let bucket = w.get(&top, "bucket", default_bucket, duration(true));
    if let (Some(end), true) = (end, bucket.ok) {
        let count = end.as_nanos().div_ceil(bucket.value.as_nanos());
        if bucket.value > end {
            w.report(
                bucket.pos,
                "bucket",
                Problem::new(format!(
                    "must not be longer than duration ({})",
                    format_duration(end)
                )),
            );
        } else if count > u128::from(MAX_BUCKETS) {
            let shortest = end.as_millis().div_ceil(u128::from(MAX_BUCKETS));
            w.report(
                bucket.pos,
                "bucket",
                Problem::new(format!("makes {count} buckets, more than {MAX_BUCKETS}"))
                    .hint(format!("use at least {shortest}ms")),
            );
        }
    }
    let seed = w.get(&top, "seed", 1u64, int(0)).value;
    let traffic = traffic(&mut w, &top, end);
    let clients = clients(&mut w, &top);
    let requests = requests(&mut w, &top);
    let defaults = {
        let s = w.section(top.get("defaults"), "defaults", &BEHAVIOUR);
        behaviour(&mut w, &s, &Behaviour::default())
    };
    let backends = backends(&mut w, &top, &defaults, end);
    if !w.errors.is_empty() {
        let mut errors = ConfigErrors(w.errors);
        errors.sort();
        return Err(errors);
    }
    Ok(Scenario {
        origin: origin.to_owned(),
        duration: length.value,
        bucket: bucket.value,
        seed,
        traffic,
        clients,
        requests,
        defaults,
        backends,
    })
}

fn traffic(w: &mut Walker<'_>, top: &Section<'_>, end: Option<Duration>) -> Traffic {
    if top.get("traffic").is_none() {
        w.report(
            top.pos,
            "traffic",
            Problem::new("missing required field").hint("like `traffic: {rate: 100}`"),
        );
    }
    let s = w.section(
        top.get("traffic"),
        "traffic",
        &["rate", "bursts", "arrivals"],
    );
    let rate = match s.get("rate") {
        None => {
            if top.get("traffic").is_some() {
                w.report(
                    s.pos,
                    "traffic.rate",
                    Problem::new("missing required field").hint("requests per second, like 100"),
                );
            }
            Vec::new()
        }
        Some(Spanned {
            node: Node::Seq(_), ..
        }) => rate_schedule(w, &s, end),
        Some(_) => {
            let rps = w.get(&s, "rate", 0.0, number(0.0, MAX_RPS)).value;
            vec![RatePoint {
                at: Duration::ZERO,
                rps,
                ramp: false,
            }]
        }
    };
    let mut bursts = Vec::new();
    for (i, item) in list(w, &s, "bursts", "like [{at: 1m, for: 10s, rps: 500}]")
        .iter()
        .enumerate()
    {
        let b = w.section(
            Some(item),
            &format!("traffic.bursts[{i}]"),
            &["at", "for", "rps"],
        );
        let at = instant(w, &b, end);
        let length = required(w, &b, "for", Duration::ZERO, duration(true));
        let rps = required(w, &b, "rps", 0.0, positive(MAX_RPS));
        if let (Some(at), true, true) = (at, length.ok, rps.ok) {
            bursts.push(Burst {
                at,
                length: length.value,
                rps: rps.value,
            });
        }
    }
    let arrivals = w
        .get(&s, "arrivals", Arrivals::default(), |node| match node {
            Node::Str(name) if name == "poisson" => Ok(Arrivals::Poisson),
            Node::Str(name) if name == "even" => Ok(Arrivals::Even),
            other => Err(Problem::new(match other {
                Node::Str(name) => format!("unknown arrivals \"{name}\""),
                _ => format!("expected poisson or even, found {}", other.kind()),
            })
            .hint("poisson (random gaps) or even (evenly spaced)")),
        })
        .value;
    let traffic = Traffic {
        rate,
        bursts,
        arrivals,
    };
    if let (Some(end), false) = (end, traffic.rate.is_empty()) {
        let expected = RateCurve::new(&traffic, end).total();
        if expected > MAX_REQUESTS {
            w.report(
                s.get("rate").and_then(|r| r.pos).or(s.pos),
                "traffic.rate",
                Problem::new(format!(
                    "asks for about {expected:.0} requests, more than {MAX_REQUESTS:.0}"
                ))
                .hint("lower the rate or shorten the duration"),
            );
        }
    }
    traffic
}

fn rate_schedule(w: &mut Walker<'_>, s: &Section<'_>, end: Option<Duration>) -> Vec<RatePoint> {
    let mut points: Vec<RatePoint> = Vec::new();
    let items = list(
        w,
        s,
        "rate",
        "like [{at: 0s, rps: 10}, {at: 1m, rps: 100, ramp: true}]",
    );
    if items.is_empty() {
        w.report(
            s.get("rate").and_then(|r| r.pos),
            "traffic.rate",
            Problem::new("must list at least one point"),
        );
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("traffic.rate[{i}]");
        let p = w.section(Some(item), &path, &["at", "rps", "ramp"]);
        let at = instant(w, &p, end);
        let rps = required(w, &p, "rps", 0.0, number(0.0, MAX_RPS));
        let ramp = w.get(&p, "ramp", false, boolean);
        let Some(at) = at else { continue };
        if i == 0 && !at.is_zero() {
            let pos = p.get("at").and_then(|a| a.pos);
            w.report(
                pos,
                &p.field("at"),
                Problem::new("the first point must be at 0s").hint("start with {at: 0s, rps: ...}"),
            );
        }
        if i == 0 && ramp.value {
            w.report(
                ramp.pos,
                &p.field("ramp"),
                Problem::new("the first point has nothing to ramp from"),
            );
        }
        if let Some(last) = points.last()
            && at <= last.at
        {
            let pos = p.get("at").and_then(|a| a.pos);
            w.report(
                pos,
                &p.field("at"),
                Problem::new(format!(
                    "must be later than the previous point ({})",
                    format_duration(last.at)
                )),
            );
            continue;
        }
        if rps.ok {
            points.push(RatePoint {
                at,
                rps: rps.value,
                ramp: ramp.value,
            });
        }
    }
    points
}

fn clients(w: &mut Walker<'_>, top: &Section<'_>) -> Clients {
    let d = Clients::default();
    let s = w.section(top.get("clients"), "clients", &["count", "network", "skew"]);
    let count = w.get(&s, "count", d.count, |node| {
        let count = int::<i128>(1)(node)?;
        if count > MAX_CLIENTS {
            return Err(Problem::new(format!(
                "must be at most {MAX_CLIENTS}, found {count}"
            )));
        }
        u32::try_from(count).map_err(|_| Problem::new(format!("{count} is too large")))
    });
    let network = w.get(&s, "network", d.network, |node| match node {
        Node::Str(text) => text.parse::<Cidr>().map_err(|error| {
            Problem::new(format!("invalid range \"{text}\": {error}")).hint("like 10.0.0.0/16")
        }),
        other => Err(Problem::new(format!(
            "expected a range like \"10.0.0.0/16\", found {}",
            other.kind()
        ))),
    });
    let skew = w.get(&s, "skew", d.skew, number(0.0, 5.0)).value;
    if count.ok && network.ok {
        let host_bits = if network.value.network().is_ipv4() {
            32
        } else {
            128
        } - u32::from(network.value.prefix());
        let room = if host_bits >= 32 {
            u64::MAX
        } else {
            1u64 << host_bits
        };
        if u64::from(count.value) > room {
            let (field, pos) = if network.pos.is_some() {
                ("network", network.pos)
            } else {
                ("count", count.pos)
            };
            w.report(
                pos,
                &s.field(field),
                Problem::new(format!(
                    "{} holds {room} addresses, fewer than the {} clients",
                    network.value, count.value
                ))
                .hint("use a wider range or fewer clients"),
            );
        }
    }
    Clients {
        count: count.value,
        network: network.value,
        skew,
    }
}

fn requests(w: &mut Walker<'_>, top: &Section<'_>) -> Vec<RequestKind> {
    if top.get("requests").is_none() {
        return vec![RequestKind {
            method: "GET".to_owned(),
            share: 1.0,
            body_bytes: 0,
        }];
    }
    let items = list(
        w,
        top,
        "requests",
        "like [{method: GET, share: 0.9}, {method: POST, share: 0.1, body: 2KiB}]",
    );
    if items.is_empty() {
        w.report(
            top.get("requests").and_then(|r| r.pos),
            "requests",
            Problem::new("must list at least one kind of request"),
        );
    }
    let mut kinds = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let s = w.section(
            Some(item),
            &format!("requests[{i}]"),
            &["method", "share", "body"],
        );
        let method = required(w, &s, "method", String::new(), |node| {
            let method = text(node)?;
            if method
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
            {
                Ok(method)
            } else {
                Err(Problem::new(format!("\"{method}\" is not an HTTP method"))
                    .hint("like GET, POST or PUT"))
            }
        });
        let share = w.get(&s, "share", 1.0, positive(1e9));
        let body = w.get(&s, "body", 0, size);
        if method.ok && share.ok && body.ok {
            kinds.push(RequestKind {
                method: method.value,
                share: share.value,
                body_bytes: body.value,
            });
        }
    }
    kinds
}

#[cfg(test)]
mod tests;
