//! The model against scrapes recorded from the demo daemon (`tests/fixtures/`); expected
//! figures are computed by hand from the fixture lines quoted in each test.

use super::*;
use crate::parse::parse;

const SCRAPE1: &str = include_str!("../../tests/fixtures/scrape1.txt");
const SCRAPE2: &str = include_str!("../../tests/fixtures/scrape2.txt");
const RESTARTED: &str = include_str!("../../tests/fixtures/restarted.txt");
const DEMO3_DOWN: &str = include_str!("../../tests/fixtures/demo3_down.txt");

fn close(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a value");
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

fn model_of(scrapes: &[(&str, u64)]) -> Model {
    let start = Instant::now();
    let mut model = Model::new();
    for (text, at) in scrapes {
        model.ingest(parse(text).unwrap(), start + Duration::from_secs(*at));
    }
    model
}

fn row<'a>(view: &'a View, name: &str) -> &'a BackendView {
    view.backends.iter().find(|b| b.name == name).unwrap()
}

#[test]
fn rates_errors_and_quantiles_between_two_scrapes() {
    let model = model_of(&[(SCRAPE1, 0), (SCRAPE2, 4)]);
    let view = model.view().unwrap();
    assert_eq!(view.window, Some(Duration::from_secs(4)));
    let names: Vec<_> = view.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["demo-1", "demo-2", "demo-3"]);

    // demo-1: 200 went 12 -> 27 (+15), 500 went 2 -> 4 (+2): 17 requests in 4 s, 2 errors.
    let demo1 = row(view, "demo-1");
    close(demo1.rate, 17.0 / 4.0);
    close(demo1.error_pct, 100.0 * 2.0 / 17.0);
    assert_eq!(demo1.requests_total, 31.0);
    // Bucket deltas: le=0.0005 +15, ... le=0.05 +15, le=0.1 +17, +Inf +17.
    // p50: rank 8.5 falls in the first bucket: 0.0005 * 8.5 / 15.
    close(demo1.p50, 0.0005 * 8.5 / 15.0);
    // p99: rank 16.83 falls in (0.05, 0.1] holding 2: 0.05 + 0.05 * (16.83 - 15) / 2.
    close(demo1.p99, 0.05 + 0.05 * (0.99 * 17.0 - 15.0) / 2.0);
    assert_eq!(demo1.healthy, Some(true));
    assert_eq!(demo1.breaker, Breaker::Closed);
    assert_eq!(demo1.weight, 1.0);

    // demo-2: +16 ok, +2 errors = 18; demo-3: +15 ok, +2 errors = 17. Total 52, 6 errors.
    close(row(view, "demo-2").rate, 18.0 / 4.0);
    close(view.totals.rate, 52.0 / 4.0);
    close(view.totals.error_pct, 100.0 * 6.0 / 52.0);
    close(demo1.share, 100.0 * 17.0 / 52.0);
    assert_eq!(view.totals.requests_total, 31.0 + 31.0 + 30.0);
    assert_eq!((view.totals.healthy, view.totals.backends), (3, 3));
}

#[test]
fn counter_reset_takes_the_new_value_as_the_increase() {
    // scrape2 then a restarted daemon: demo-1's 200 fell 27 -> 3 and 500 fell 4 -> 1.
    let model = model_of(&[(SCRAPE2, 0), (RESTARTED, 2)]);
    let view = model.view().unwrap();
    let demo1 = row(view, "demo-1");
    close(demo1.rate, 4.0 / 2.0);
    close(demo1.error_pct, 25.0);
    // Its histogram fell from 31 to 4, all four at or below 0.5 ms: p50 = 0.0005 * 2 / 4.
    close(demo1.p50, 0.0005 * 2.0 / 4.0);
    // demo-2 and demo-3 have 3 requests each and no 500 series any more: 10 requests, 1 error.
    close(view.totals.rate, 10.0 / 2.0);
    close(view.totals.error_pct, 10.0);
    assert!(view.backends.iter().all(|b| b.rate.unwrap() >= 0.0));
}

#[test]
fn a_single_scrape_has_no_rate_but_lifetime_shares() {
    let model = model_of(&[(SCRAPE1, 0)]);
    let view = model.view().unwrap();
    assert_eq!(view.window, None);
    assert_eq!(view.totals.rate, None);
    // scrape1 lifetime: 12 + 2 + 12 + 1 + 11 + 2 = 40 requests, 5 errors.
    close(view.totals.error_pct, 100.0 * 5.0 / 40.0);
    close(row(view, "demo-1").error_pct, 100.0 * 2.0 / 14.0);
    assert!(model.history().total.rate.is_empty());
}

#[test]
fn health_down_is_reported() {
    let model = model_of(&[(DEMO3_DOWN, 0)]);
    let view = model.view().unwrap();
    assert_eq!(row(view, "demo-3").healthy, Some(false));
    assert_eq!((view.totals.healthy, view.totals.backends), (2, 3));
}

#[test]
fn answers_without_a_backend_count_in_totals_not_as_a_row() {
    let text = "lb_requests_total{method=\"GET\",status=\"503\",backend=\"none\"} 4\n\
                lb_requests_total{method=\"GET\",status=\"200\",backend=\"a\"} 4\n\
                lb_backend_health_status{backend=\"a\"} 1\n\
                lb_circuit_breaker_state{backend=\"a\"} 1\n\
                lb_backend_weight{backend=\"a\"} 3\n";
    let model = model_of(&[(text, 0)]);
    let view = model.view().unwrap();
    assert_eq!(view.backends.len(), 1);
    assert_eq!(view.backends[0].breaker, Breaker::Open);
    close(view.totals.error_pct, 50.0);
    close(view.backends[0].error_pct, 0.0);
    assert_eq!(view.totals.requests_total, 8.0);
}

#[test]
fn bodies_a_backend_cut_off_count_as_failures() {
    let scrape = |requests: u32, cut: u32| {
        format!(
            "lb_requests_total{{method=\"GET\",status=\"200\",backend=\"a\"}} {requests}\n\
             lb_backend_body_failures_total{{backend=\"a\"}} {cut}\n\
             lb_backend_health_status{{backend=\"a\"}} 1\n"
        )
    };
    let (first, second) = (scrape(10, 1), scrape(30, 6));
    let model = model_of(&[(&first, 0), (&second, 1)]);
    let view = model.view().unwrap();
    // 20 requests in the window, 5 of them cut off.
    close(view.backends[0].error_pct, 25.0);
    close(view.totals.error_pct, 25.0);
}

#[test]
fn histories_grow_to_their_bound() {
    let start = Instant::now();
    let mut model = Model::new();
    for i in 0..(HISTORY_LEN as u64 + 20) {
        let text = format!(
            "lb_requests_total{{method=\"GET\",status=\"200\",backend=\"a\"}} {}\n\
             lb_backend_health_status{{backend=\"a\"}} 1\n",
            i * 10
        );
        model.ingest(parse(&text).unwrap(), start + Duration::from_secs(i));
    }
    let history = model.history();
    assert_eq!(history.total.rate.len(), HISTORY_LEN);
    assert_eq!(history.backends["a"].rate.len(), HISTORY_LEN);
    assert!(history.total.rate.iter().all(|&r| r == 10.0));
}

#[test]
fn quantile_edges() {
    assert_eq!(quantile(0.5, &[]), None);
    assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    // Everything above the last finite bound: the bound itself.
    assert_eq!(
        quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 5.0)]),
        Some(1.0)
    );
    // Uniform over (0, 1] and (1, 2]: the median is the boundary, p75 mid-second bucket.
    let buckets = [(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
    assert_eq!(quantile(0.5, &buckets), Some(1.0));
    assert_eq!(quantile(0.75, &buckets), Some(1.5));
    // A torn read (a lower cumulative count after a higher one) does not go backwards.
    let torn = [(1.0, 10.0), (2.0, 9.0), (f64::INFINITY, 10.0)];
    assert_eq!(quantile(0.99, &torn), Some(0.99));
}

#[test]
fn counter_delta_rule() {
    assert_eq!(counter_delta(None, 5.0), 5.0);
    assert_eq!(counter_delta(Some(3.0), 5.0), 2.0);
    assert_eq!(counter_delta(Some(9.0), 5.0), 5.0);
}

#[test]
fn http2_clients_closed_are_totalled_by_reason_and_over_the_window() {
    let scrape = |rapid: u32, protocol: u32| {
        format!(
            "{SCRAPE1}# TYPE lb_http2_connections_closed counter\n\
             lb_http2_connections_closed_total{{reason=\"rapid_reset\"}} {rapid}\n\
             lb_http2_connections_closed_total{{reason=\"data_flood\"}} 0\n\
             lb_http2_connections_closed_total{{reason=\"protocol_error\"}} {protocol}\n"
        )
    };
    let first = model_of(&[(&scrape(3, 1), 0)]);
    let totals = &first.view().unwrap().totals;
    let reasons = [
        ("rapid_reset".to_owned(), 3.0),
        ("protocol_error".to_owned(), 1.0),
    ];
    assert_eq!(totals.clients_closed, reasons);
    assert_eq!(totals.clients_closed_recently, None);

    let later = model_of(&[(&scrape(3, 1), 0), (&scrape(5, 2), 4)]);
    let totals = &later.view().unwrap().totals;
    assert_eq!(totals.clients_closed.len(), 2);
    assert_eq!(totals.clients_closed_recently, Some(3.0));
    // A restarted daemon counts from zero: what it counts now is new.
    let restarted = model_of(&[(&scrape(5, 2), 0), (&scrape(1, 0), 4)]);
    assert_eq!(
        restarted.view().unwrap().totals.clients_closed_recently,
        Some(1.0)
    );
    // A daemon without HTTP/2 (or older) has none.
    let without = model_of(&[(SCRAPE1, 0), (SCRAPE2, 4)]);
    let totals = &without.view().unwrap().totals;
    assert!(totals.clients_closed.is_empty());
    assert_eq!(totals.clients_closed_recently, Some(0.0));
}

#[test]
fn http2_connections_and_streams_open_are_read_and_zero_without_them() {
    let scrape = format!(
        "{SCRAPE1}# TYPE lb_http2_client_connections gauge\n\
         lb_http2_client_connections 3\n\
         # TYPE lb_http2_client_streams gauge\n\
         lb_http2_client_streams 41\n"
    );
    let model = model_of(&[(&scrape, 0)]);
    let totals = &model.view().unwrap().totals;
    assert_eq!(
        (totals.http2_connections, totals.http2_streams),
        (3.0, 41.0)
    );
    // A daemon that predates the gauges shows none.
    let older = model_of(&[(SCRAPE1, 0)]);
    let totals = &older.view().unwrap().totals;
    assert_eq!((totals.http2_connections, totals.http2_streams), (0.0, 0.0));
}
