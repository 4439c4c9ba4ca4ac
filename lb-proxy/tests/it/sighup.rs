//! The `lb` process and `SIGHUP`: a valid file applies, an invalid one changes nothing.

use std::time::Duration;

use http::StatusCode;

use crate::support::admin::{self, temp_dir, write_file};
use crate::support::process::Lb;
use crate::support::*;

const SIDE: &str = "admin:\n  listen: 127.0.0.1:0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_file_keeps_serving_and_counts_the_failure() {
    let fleet = backends(2).await;
    let mut specs = specs(&fleet);
    let path = temp_dir("sighup").join("lb.yaml");
    write_file(&path, &config_yaml(&specs, SIDE));
    let lb = Lb::start_async(&path, &[]).await;
    let (metrics, admin) = (lb.metrics.unwrap(), lb.admin.unwrap());

    write_file(&path, "backends:\n  - address: nowhere\n");
    lb.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = scrape_at(metrics).await;
            metric_sum(&text, "lb_config_reloads_total", &["result=\"failure\""]) == 1.0
        })
        .await,
        "the failed reload is counted"
    );
    for _ in 0..4 {
        assert_eq!(get(&client(), lb.listen, "/").await.status, StatusCode::OK);
    }
    assert_eq!(
        admin::backends(admin).await.len(),
        2,
        "the old configuration serves"
    );

    specs[0].2 = 4;
    write_file(&path, &config_yaml(&specs, SIDE));
    lb.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            admin::backend(admin, "b0").await["weight"] == 4
        })
        .await
    );
    let text = scrape_at(metrics).await;
    assert_eq!(
        metric_sum(&text, "lb_config_reloads_total", &["result=\"success\""]),
        1.0
    );
}

/// What `lb-cli check` warns of is logged once the daemon serves, and again by a reload that
/// brings a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_warnings_are_logged_at_start_and_on_reload() {
    let fleet = backends(2).await;
    let specs = specs(&fleet);
    let dir = temp_dir("config-warnings");
    let path = dir.join("lb.yaml");
    let h2c = "server:\n  h2c: true\n";
    write_file(
        &path,
        &config_yaml(&specs, &format!("retry:\n  max_attempts: 3\n{h2c}")),
    );
    let lb = Lb::start_logged(&path, &dir.join("lb.log")).await;
    let retries = "configuration: retry.max_attempts: 3 attempts for 2 backends";
    assert!(lb.logs(retries).await, "{}", lb.log());

    let streams =
        format!("retry:\n  max_attempts: 2\n{h2c}  http2:\n    max_concurrent_streams: 5000\n");
    write_file(&path, &config_yaml(&specs, &streams));
    lb.lb.signal("HUP");
    assert!(
        lb.logs("configuration: server.http2.max_concurrent_streams")
            .await,
        "{}",
        lb.log()
    );
    let log = lb.log();
    assert_eq!(log.matches(retries).count(), 1, "{log}");
    let line = log
        .lines()
        .find(|line| line.contains("http2.max_concurrent_streams"))
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains("lb-cli check"),
        "{line}"
    );
}
