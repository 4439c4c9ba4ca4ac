//! Hot reload of pools and routes: a pool and a route join and leave while traffic flows, a
//! backend moves between pools, and what a client spent of a rate limit survives a reload that
//! leaves the limit alone (and is given back when the limit changes).

use lb_proxy::Daemon;

use crate::reload::from_file;
use crate::routes::{get_host, pooled};
use crate::support::admin::{self, write_file};
use crate::support::*;

const ADMIN: &str = "admin:\n  listen: 127.0.0.1:0\n";

#[tokio::test]
async fn a_pool_and_its_route_join_and_leave_and_a_backend_moves_between_pools() {
    let fleet = backends(3).await;
    let (web, api) = fleet.split_at(2);
    let one = "routes:\n  - name: web\n    pool: web\n";
    let (daemon, path) =
        from_file("pools", &format!("{ADMIN}{}", pooled(&[("web", web)], one))).await;
    let admin_addr = daemon.admin_addr.expect("admin on");
    assert_eq!(get_host(&daemon, "api.localhost", "/").await.status, 200);

    // A pool `api` and a route to it join.
    let two = "routes:\n  - name: api\n    match: {host: api.localhost}\n    pool: api\n\
               \x20 - name: web\n    pool: web\n";
    write_file(
        &path,
        &format!("{ADMIN}{}", pooled(&[("web", web), ("api", api)], two)),
    );
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(
        report.changes.contains(&"pool api added".to_owned()),
        "{report:?}"
    );
    assert!(report.changes.contains(&"routes".to_owned()), "{report:?}");
    for _ in 0..4 {
        assert_eq!(
            get_host(&daemon, "api.localhost", "/").await.backend(),
            "b2"
        );
        assert_ne!(
            get_host(&daemon, "www.localhost", "/").await.backend(),
            "b2"
        );
    }
    let listed = admin::backend(admin_addr, "b2").await;
    assert_eq!(listed["pool"], "api");
    let metrics = scrape(&daemon).await;
    assert!(
        metrics.contains("lb_backend_weight{backend=\"b2\",pool=\"api\"} 1"),
        "{metrics}"
    );
    assert!(
        metric_sum(
            &metrics,
            "lb_requests_total",
            &["route=\"api\"", "backend=\"b2\""]
        ) >= 4.0
    );

    // b1 moves from web to api; the route to api stays.
    let b0 = &fleet[0..1];
    let yaml = format!(
        "{ADMIN}{}",
        pooled(&[("web", b0), ("api", &fleet[1..3])], two)
    );
    write_file(&path, &yaml);
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(
        report.changes.contains(&"backend b1 removed".to_owned()),
        "{report:?}"
    );
    assert!(
        report.changes.contains(&"backend b1 added".to_owned()),
        "{report:?}"
    );
    let answers: Vec<Answer> = {
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(get_host(&daemon, "api.localhost", "/").await);
        }
        answers
    };
    assert_eq!(tally(&answers).get("b1"), Some(&3), "{:?}", tally(&answers));
    assert_eq!(admin::backend(admin_addr, "b1").await["pool"], "api");
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            metrics.contains("lb_backend_weight{backend=\"b1\",pool=\"api\"}")
                && !metrics.contains("lb_backend_weight{backend=\"b1\",pool=\"web\"}")
        })
        .await
    );

    // The pool api leaves with its route: its host falls to web.
    write_file(&path, &format!("{ADMIN}{}", pooled(&[("web", b0)], one)));
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(
        report.changes.contains(&"pool api removed".to_owned()),
        "{report:?}"
    );
    assert_eq!(
        get_host(&daemon, "api.localhost", "/").await.backend(),
        "b0"
    );
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            !metrics.contains("backend=\"b2\"") && !metrics.contains("route=\"api\"")
        })
        .await,
        "the series of b2 and of the route api go with them"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_rate_limit_keeps_what_was_spent_across_a_reload_that_leaves_it_alone() {
    let fleet = backends(1).await;
    let limited = |per: &str, extra_route: &str| {
        let rest = format!(
            "rate_limits:\n  per-client:\n    requests: 3\n    per: {per}\n\
             routes:\n  - name: limited\n    pool: web\n    rate_limit: per-client\n{extra_route}"
        );
        format!("{ADMIN}{}", pooled(&[("web", &fleet)], &rest))
    };
    let (daemon, path) = from_file("limits", &limited("1m", "")).await;
    let statuses = |daemon: &Daemon| {
        let addr = daemon.listen_addr;
        async move {
            let client = client();
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(get(&client, addr, "/").await.status);
            }
            statuses
        }
    };
    assert_eq!(statuses(&daemon).await, [200, 200, 200, 429]);

    // Another route joins; the limit is the same: the client's budget stays spent.
    write_file(
        &path,
        &limited(
            "1m",
            "  - name: other\n    match: {path_prefix: /other}\n    pool: web\n",
        ),
    );
    daemon.reloader().reload().await.expect("reload applies");
    assert_eq!(statuses(&daemon).await, [429, 429, 429, 429]);

    // The limit itself changes: a new budget.
    write_file(&path, &limited("2m", ""));
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(
        report.changes.contains(&"rate_limits".to_owned()),
        "{report:?}"
    );
    assert_eq!(statuses(&daemon).await, [200, 200, 200, 429]);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_queue_and_slow_start_change_in_place() {
    let fleet = backends(2).await;
    let pool = |queue: &str| {
        let rest = format!("{queue}routes:\n  - name: web\n    pool: web\n");
        format!("{ADMIN}{}", pooled(&[("web", &fleet)], &rest))
    };
    let (daemon, path) = from_file("queue", &pool("")).await;
    write_file(
        &path,
        &pool("queue:\n  size: 10\n  timeout: 2s\nload_balancer:\n  slow_start: 10s\n"),
    );
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(
        report.changes.contains(&"pools.web.queue".to_owned()),
        "{report:?}"
    );
    assert!(
        report
            .changes
            .contains(&"pools.web.load_balancer".to_owned()),
        "{report:?}"
    );
    let metrics = scrape(&daemon).await;
    assert!(
        metrics.contains("lb_queue_depth{pool=\"web\"} 0"),
        "{metrics}"
    );
    assert_eq!(get(&client(), daemon.listen_addr, "/").await.status, 200);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_key_file_that_cannot_be_read_refuses_the_reload_and_the_old_keys_serve() {
    let fleet = backends(1).await;
    let keys = admin::temp_dir("auth-reload").join("keys.txt");
    let secured = |file: &str| {
        let rest = format!(
            "auth:\n  sso:\n    jwt:\n      keys: [{{algorithm: RS256, file: {file}}}]\n\
             routes:\n  - name: web\n    pool: web\n    auth: sso\n"
        );
        format!("{ADMIN}{}", pooled(&[("web", &fleet)], &rest))
    };
    let public = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa-public.pem"
    );
    let (daemon, path) = from_file("auth-reload", &secured(public)).await;
    assert_eq!(get(&client(), daemon.listen_addr, "/").await.status, 401);

    write_file(&path, &secured(&keys.display().to_string()));
    let error = daemon.reloader().reload().await.expect_err("refused");
    assert!(error.to_string().contains("keys.txt"), "{error}");
    // Still the old scheme: an anonymous request is refused, not let through.
    assert_eq!(get(&client(), daemon.listen_addr, "/").await.status, 401);
    let metrics = scrape(&daemon).await;
    assert!(
        metrics.contains("lb_config_last_reload_successful 0"),
        "{metrics}"
    );
    daemon.shutdown().await;
}
