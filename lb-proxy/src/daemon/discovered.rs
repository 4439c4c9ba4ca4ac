//! The discovery sources of the live pools, and their answers applied.
//!
//! Each pool with a `discovery` block has one running source (`crate::discovery`) and one
//! task that takes the source's answers and applies them through [`Control::apply_discovered`]:
//! the live configuration with that pool's backends replaced, diffed and applied under the
//! control's lock like a reload. The last set applied to each pool is kept here, so that a
//! reload of the file (whose pool lists no backends) keeps the discovered ones instead of
//! emptying the pool.
//!
//! Sources follow the configuration: after every change, [`Sources::sync`] starts the sources
//! of pools that gained one, stops those of pools that lost theirs or left, and restarts a
//! source whose settings (or whose pool's `upstream`, which gives discovered backends their
//! defaults) changed — the pool keeps its set until the new source answers.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use lb_core::config::{BackendConfig, Config, DiscoveryConfig, PoolConfig, UpstreamConfig};
use tokio::task::JoinHandle;

use super::control::Control;
use crate::discovery::{self, Answers, Source};

/// The running sources and the sets they gave, changed only under the control's lock.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// By pool name.
    running: HashMap<String, Running>,
    /// The last set applied to each discovered pool, by pool name.
    sets: HashMap<String, Vec<BackendConfig>>,
}

/// One pool's source and the task applying its answers; dropping it stops both.
#[derive(Debug)]
struct Running {
    /// What the source was started from: a change restarts it.
    settings: (Box<DiscoveryConfig>, UpstreamConfig),
    _source: Source,
    applier: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.applier.abort();
    }
}

impl Sources {
    /// Makes the running sources those of `pools`.
    pub(crate) fn sync(&mut self, control: &Arc<Control>, pools: &[PoolConfig]) {
        let metrics = &control.shared.metrics;
        let wanted = |name: &str| (pools.iter()).find(|p| p.name == name && p.discovery.is_some());
        let gone: Vec<String> = (self.running.keys())
            .filter(|name| wanted(name).is_none())
            .cloned()
            .collect();
        for name in gone {
            self.running.remove(&name);
            self.sets.remove(&name);
            metrics.discovery.stopped(&Arc::new(name));
        }
        for pool in pools {
            let Some(settings) = &pool.discovery else {
                continue;
            };
            let settings = (settings.clone(), pool.upstream.clone());
            if (self.running.get(&pool.name)).is_some_and(|r| r.settings == settings) {
                continue;
            }
            let Some((source, answers)) = discovery::start(pool, metrics) else {
                continue;
            };
            let kind = settings.0.source.kind();
            let applier = tokio::spawn(apply_answers(
                Arc::downgrade(control),
                pool.name.clone(),
                kind,
                answers,
            ));
            // The one replaced, if any, stops here.
            self.running.insert(
                pool.name.clone(),
                Running {
                    settings,
                    _source: source,
                    applier,
                },
            );
            if let Some(set) = self.sets.get(&pool.name) {
                let pool_name = Arc::new(pool.name.clone());
                metrics.discovery.record(&pool_name, set.len());
            }
        }
    }

    /// `config` with each discovered pool's last set (see the module's documentation).
    pub(crate) fn keep_discovered(&self, config: Config) -> Config {
        let sets = (self.sets.iter()).map(|(pool, set)| (pool.as_str(), &set[..]));
        lb_core::discovery::keep_discovered(config, sets)
    }

    /// `set` is now `pool`'s.
    pub(crate) fn record(&mut self, control: &Control, pool: &str, set: Vec<BackendConfig>) {
        let metrics = &control.shared.metrics.discovery;
        metrics.record(&Arc::new(pool.to_owned()), set.len());
        self.sets.insert(pool.to_owned(), set);
    }

    /// Stops every source.
    pub(crate) fn stop_all(&mut self) {
        self.running.clear();
    }
}

/// Applies each answer of `pool`'s source, in order, until the source or the daemon goes.
async fn apply_answers(
    control: Weak<Control>,
    pool: String,
    kind: &'static str,
    mut answers: Answers,
) {
    while answers.changed().await.is_ok() {
        let set = answers.borrow_and_update().clone();
        let (Some(set), Some(control)) = (set, control.upgrade()) else {
            continue;
        };
        control.apply_discovered(&pool, kind, set).await;
    }
}
