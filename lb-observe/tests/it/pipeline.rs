//! Scrape → parse → model, as `lb-tui` runs it: the demo's recorded scrapes served over HTTP
//! (the second one chunked), fetched by one [`Scraper`], parsed and ingested.

use std::time::{Duration, Instant};

use lb_observe::model::Model;
use lb_observe::parse::parse;
use lb_observe::scrape::{Options, Scraper};

use crate::support::{Server, ok, ok_chunked};

const SCRAPE1: &str = include_str!("../fixtures/scrape1.txt");
const SCRAPE2: &str = include_str!("../fixtures/scrape2.txt");

#[test]
fn two_scrapes_over_http_give_rates() {
    let server = Server::start(vec![
        ok(SCRAPE1.as_bytes()),
        ok_chunked(SCRAPE2.as_bytes(), 1000),
    ]);
    let scraper = Scraper::new(&server.url(), Options::default()).unwrap();
    let start = Instant::now();
    let mut model = Model::new();
    for at in [0, 4] {
        let text = scraper.fetch().unwrap();
        model.ingest(parse(&text).unwrap(), start + Duration::from_secs(at));
    }
    let view = model.view().unwrap();
    assert_eq!(view.window, Some(Duration::from_secs(4)));
    // The model's own tests derive these from the fixtures: 52 requests in 4 s, 6 of them 5xx.
    assert_eq!(view.totals.rate, Some(52.0 / 4.0));
    assert_eq!(view.totals.error_pct, Some(100.0 * 6.0 / 52.0));
    assert_eq!((view.totals.healthy, view.totals.backends), (3, 3));
}
