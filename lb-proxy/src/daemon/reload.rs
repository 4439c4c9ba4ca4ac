//! A reload applied, under the control's lock: everything that may fail first (the token, the
//! backends' TLS files, the authentication schemes' key files, the listeners, the
//! certificates), so that a refused reload changes nothing; then each change of the diff, pool
//! by pool, in one exhaustive `match`; then one new snapshot swapped in.
//!
//! Pools, backends, budgets, queues and rate-limit state that stay are the same objects in the
//! next snapshot: a reload does not reset what the balancer learned or what a client spent.
//!
//! A discovery source's answer takes the same path ([`Origin::Discovery`]): the live
//! configuration with one pool's backends replaced. It reads no file of the daemon's own (the
//! token, key files and certificates are the live ones), and a backend it changes keeps its
//! runtime overrides.

use std::collections::HashSet;
use std::sync::Arc;

use lb_core::config::{Change, Config, diff};
use lb_core::retry::RetryBudget;

use super::control::{
    Control, Live, ReloadError, ReloadReport, check_upstream_tls, config_hash, open_access_log,
    read_token,
};
use super::endpoints::Rebinds;
use crate::clock;
use crate::runtime::{Policies, PoolState, Runtime};
use crate::upstream::backend::Backend;

/// Where a change comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The configuration file (a reload, or a configuration handed in).
    File,
    /// A discovery source: only one pool's backends differ from the live configuration.
    Discovery,
}

/// The reload itself: see the module's documentation.
pub(super) async fn apply(
    control: &Arc<Control>,
    live: &mut Live,
    mut config: Config,
    origin: Origin,
) -> Result<ReloadReport, ReloadError> {
    let file = origin == Origin::File;
    let old = control.shared.runtime.load_full();
    let needs_restart: Vec<String> = (diff(&old.config, &config).iter())
        .filter_map(|change| change.needs_restart(&old.config))
        .map(str::to_owned)
        .collect();
    // What cannot change while the daemon runs stays as it is, and says so in the report.
    config.server.workers = old.config.server.workers;
    if config.server.tls.is_some() != old.config.server.tls.is_some() {
        config.server.tls = old.config.server.tls.clone();
    }
    let token = match file {
        true => read_token(&config.admin).map_err(ReloadError::Token)?,
        false => control.token.load_full().map(|token| (*token).clone()),
    };
    let changes = diff(&old.config, &config);
    let joining = changes.iter().flat_map(|change| match change {
        Change::BackendAdded { backend, .. } => std::slice::from_ref(backend),
        Change::PoolAdded(pool) => &pool.backends[..],
        _ => &[],
    });
    check_upstream_tls(joining)?;
    // A discovery source's files are read again, as a restarted source would read them.
    if file {
        for pool in config.pool_list() {
            crate::discovery::check(&pool).map_err(ReloadError::Discovery)?;
        }
    }
    // Key files are read again on every reload (a rotated key is taken), and a bad one refuses
    // the reload rather than every request of its routes.
    let schemes = match file {
        true => Some(
            crate::policy::auth::load_all(&config.auth)
                .map_err(|error| ReloadError::Auth(error.to_string()))?,
        ),
        false => None,
    };
    // A changed access log is opened now (a target that cannot be opened refuses the reload)
    // and swapped in with the snapshot; the one it replaces writes what it holds and ends
    // when the last request using it does.
    let access_log = match (changes.iter()).any(|change| matches!(change, Change::AccessLog(_))) {
        true => Some(
            open_access_log(&config.access_log, &control.shared.metrics)
                .map_err(|(target, source)| ReloadError::AccessLog { target, source })?,
        ),
        false => None,
    };
    let rebinds = Rebinds::prepare(&old.config, &config, live).await?;
    // The certificates last: the one step that changes something and may still fail (every
    // certificate loads, or none is swapped in).
    if let (Some(tls), Some(settings), true) = (&control.tls, &config.server.tls, file) {
        tls.apply(settings)?;
    }

    // A new exporter for a changed `tracing` section (it may fail: the old one stays).
    let tracer = match changes.iter().find(|c| matches!(c, Change::Tracing(_))) {
        Some(_) if config.tracing.enabled => {
            let metrics = control.shared.metrics.tracing.clone();
            Some(Some(crate::trace::Tracer::start(&config.tracing, metrics)?))
        }
        Some(_) => Some(None),
        None => None,
    };

    // From here on nothing fails.
    let metrics = &control.shared.metrics;
    let now = clock::now();
    let pool_configs = config.pool_list();
    let mut pools = Pools {
        states: old.pool_states(),
        leaving: Vec::new(),
        notes: Vec::new(),
        recheck: HashSet::new(),
    };
    for change in &changes {
        match change {
            Change::PoolRemoved(name) => {
                if let Some(at) = pools.position(name) {
                    pools.leaving.extend(pools.states.remove(at).backends);
                }
                live.health.remove_pool(name);
            }
            Change::PoolAdded(pool) => {
                let state = PoolState::new(pool, metrics, now);
                for backend in &state.backends {
                    backend.slow_start.begin(now);
                }
                let backends = &state.backends[..];
                live.health
                    .add_pool(&pool.name, &pool.health_check, backends);
                pools.states.push(state);
            }
            Change::PoolOrder(order) => {
                (pools.states).sort_by_key(|state| order.iter().position(|n| *n == *state.name));
            }
            Change::BackendRemoved { pool, name } => {
                if let Some(state) = pools.state(pool)
                    && let Some(at) = state.backends.iter().position(|b| b.name() == name)
                {
                    let backend = state.backends.remove(at);
                    pools.leaving.push(backend);
                }
                if let Some(checkers) = live.health.pool(pool) {
                    checkers.remove(name);
                }
            }
            Change::BackendAdded { pool, backend } => {
                let Some(config) = pool_configs.iter().find(|p| p.name == *pool) else {
                    continue;
                };
                let Some(state) = pools.state(pool) else {
                    continue;
                };
                let backend = state.new_backend(config, backend, metrics, now);
                backend.slow_start.begin(now);
                if let Some(checkers) = live.health.pool(pool) {
                    checkers.add(&backend);
                }
                state.backends.push(backend);
            }
            Change::BackendUpdated {
                pool,
                backend: update,
            } => {
                let cleared = (pools.state(pool))
                    .and_then(|state| state.backends.iter().find(|b| b.name() == update.name))
                    .is_some_and(|backend| backend.update(update, file).0);
                if cleared {
                    pools.notes.push(format!(
                        "backend {}: the file changed it, its runtime overrides were cleared",
                        update.name
                    ));
                }
            }
            Change::BackendOrder { pool, order } => {
                if let Some(state) = pools.state(pool) {
                    (state.backends).sort_by_key(|b| order.iter().position(|n| n == b.name()));
                }
            }
            // The selector is built for every snapshot, from the new section; a ramp takes the
            // new length.
            Change::LoadBalancer(pool, section) => {
                for backend in pools.backends(pool) {
                    backend.slow_start.set_duration(section.slow_start);
                }
            }
            Change::HealthCheck(pool, _) => {
                pools.recheck.insert(pool.clone());
            }
            Change::CircuitBreaker(pool, breaker) => {
                let policy = breaker.enabled.then_some(breaker.policy);
                for backend in pools.backends(pool) {
                    backend.set_breaker_policy(policy);
                }
            }
            Change::Retry(pool, retry) => {
                if let Some(state) = pools.state(pool) {
                    state.budget = Arc::new(RetryBudget::new(retry.budget, now));
                }
            }
            Change::Upstream(pool, upstream) => {
                for backend in pools.backends(pool) {
                    backend.pool.configure(upstream);
                }
            }
            Change::Queue(pool, queue) => {
                if let Some(state) = pools.state(pool) {
                    state.queue.configure(queue);
                }
            }
            // The sources follow the pools once the snapshot is live (below).
            Change::Discovery(..) => {}
            // Routes are built for every snapshot; the policies below keep what stays.
            Change::Routes
            | Change::PathNormalization
            | Change::RateLimits
            | Change::Redis
            | Change::Auth => {}
            // The accept loops take the new settings for the connections they accept next;
            // a new address was bound above.
            Change::Server(server) => control.limit.resize(server.max_client_connections),
            // Endpoints move or restart below, with the sockets bound above.
            Change::Metrics(_) | Change::Admin(_) => {}
            // The access log was opened above and is swapped in below; the request id is read
            // from the snapshot.
            Change::AccessLog(_) | Change::RequestId(_) => {}
            // The new tracer (or none) goes in with the snapshot, below.
            Change::Tracing(_) => {}
            Change::Reload(_) => live.watcher = None,
        }
    }
    let Pools {
        mut states,
        leaving,
        notes,
        recheck,
        ..
    } = pools;
    // The snapshot takes the pools in the file's order.
    states.sort_by_key(|state| pool_configs.iter().position(|p| p.name == *state.name));
    let policies = match schemes {
        Some(schemes) => Arc::new(Policies::build(
            &config,
            Some(&old.policies),
            Some(schemes),
            metrics,
            now,
        )),
        // Only backends changed: the policies are the live ones.
        None => old.policies.clone(),
    };
    let config = Arc::new(config);
    let snapshot = Runtime::assemble(config.clone(), states, policies, metrics);
    control.shared.runtime.store(Arc::new(snapshot));
    if let Some(log) = access_log {
        control.shared.access_log.replace(log);
    }
    if let Some(tracer) = tracer {
        control.shared.tracing.set(tracer);
    }
    // After the swap no snapshot hands them out; their requests in flight finish.
    for backend in leaving {
        backend.retire();
    }
    let runtime = control.shared.runtime.load();
    for pool in runtime
        .pools
        .iter()
        .filter(|p| recheck.contains(&p.config.name))
    {
        if let Some(checkers) = live.health.pool(&pool.config.name) {
            checkers.reconfigure(&pool.config.health_check, &pool.backends);
        }
    }
    rebinds.install(control, live, &config);
    if config.server.tls != old.config.server.tls {
        // The certificates may live in other directories now.
        if let Some(watch) = live.tls_watch.take() {
            watch.abort();
        }
        live.tls_watch = control.tls_watch();
    }
    if live.watcher.is_none() {
        live.watcher = control.watcher(&config);
    }
    // Sources start, stop or restart with their pools' settings.
    live.sources.sync(control, &pool_configs);
    if file {
        control.token.store(token.map(Arc::new));
    }
    Ok(ReloadReport {
        changes: changes.iter().map(Change::subject).collect(),
        needs_restart,
        notes,
        addresses: live.addresses(),
        hash: config_hash(&config),
    })
}

/// The pools as a reload changes them.
struct Pools {
    /// What each pool keeps, by name.
    states: Vec<PoolState>,
    /// Backends that leave: retired once the new snapshot is live.
    leaving: Vec<Arc<Backend>>,
    notes: Vec<String>,
    /// Pools whose health checks restart under new settings.
    recheck: HashSet<String>,
}

impl Pools {
    fn position(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|state| *state.name == name)
    }

    fn state(&mut self, name: &str) -> Option<&mut PoolState> {
        self.states.iter_mut().find(|state| *state.name == name)
    }

    fn backends(&mut self, name: &str) -> &[Arc<Backend>] {
        self.state(name).map_or(&[], |state| &state.backends[..])
    }
}
