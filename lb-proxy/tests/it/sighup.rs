//! The `lb` process and `SIGHUP`: a valid file applies, an invalid one changes nothing.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use crate::support::admin::{self, temp_dir, write_file};
use crate::support::process::Lb;
use crate::support::*;

const SIDE: &str = "admin:\n  listen: 127.0.0.1:0\n";

async fn scrape_at(metrics: SocketAddr) -> String {
    get(&client(), metrics, "/metrics").await.text()
}

/// Starts `lb` off the test's threads: its start blocks on reading its first line.
async fn start(config: &std::path::Path, args: &[&str]) -> Lb {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Lb::start(&config, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_file_keeps_serving_and_counts_the_failure() {
    let fleet = backends(2).await;
    let mut specs = specs(&fleet);
    let path = temp_dir("sighup").join("lb.yaml");
    write_file(&path, &config_yaml(&specs, SIDE));
    let lb = start(&path, &[]).await;
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
