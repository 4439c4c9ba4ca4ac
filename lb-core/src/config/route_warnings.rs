//! Warnings about routes and pools: a route that can never match because an earlier one takes
//! every request it would (first match wins), and a pool that no route sends to.

use super::model::Config;
use super::pools::DEFAULT_POOL;
use super::warnings::{ConfigWarning, warning};

/// Pushes the route and pool warnings of `config`.
pub(crate) fn routes(config: &Config, out: &mut Vec<ConfigWarning>) {
    for (later, route) in config.routes.iter().enumerate() {
        let shadow = config.routes[..later]
            .iter()
            .position(|earlier| earlier.matcher.covers(&route.matcher));
        if let Some(earlier) = shadow {
            let first = &config.routes[earlier];
            out.push(warning(
                &format!("routes[{later}]"),
                &[],
                format!(
                    "route \"{}\" can never match: routes[{earlier}] (\"{}\") comes first and \
                     takes every request it would",
                    route.name, first.name
                ),
                "move it above the broader route, or narrow the broader route's match",
            ));
        }
    }
    if config.routes.is_empty() {
        // One route takes everything to the first pool; the others are unused.
        for pool in config.pool_list().iter().skip(1) {
            out.push(unused(
                &pool.name,
                "routes",
                "without `routes`, every request goes to the first pool",
            ));
        }
        return;
    }
    for pool in config.pool_list() {
        let used = config
            .routes
            .iter()
            .any(|r| r.pool.as_deref() == Some(pool.name.as_str()));
        if !used {
            out.push(unused(
                &pool.name,
                "routes",
                "send a route to it, or remove it",
            ));
        }
    }
}

fn unused(name: &str, related: &str, hint: &str) -> ConfigWarning {
    let field = match name {
        DEFAULT_POOL => "backends".to_owned(),
        _ => format!("pools.{name}"),
    };
    warning(
        &field,
        &[related],
        format!("no route sends to pool \"{name}\": its backends get no traffic"),
        hint,
    )
}
