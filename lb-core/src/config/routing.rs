//! Stage two for the sections beyond the flat form: path normalisation, the default queue,
//! pools, rate limits, Redis, authentication schemes and routes, read after the top-level
//! sections so that pools inherit them and routes can name what the file defines.

use super::model::Config;
use super::walk::{Section, Walker};
use super::{auth, limits, pools, routes};

/// Reads the sections of routes and pools into `config`.
pub(crate) fn read(w: &mut Walker<'_>, top: &Section<'_>, config: &mut Config) {
    config.path_normalization = routes::path_normalization(w, top);
    config.queue = pools::queue(w, top.get("queue"), "queue", config.queue);
    config.pools = pools::read(w, top, config);
    pools::unique_backend_names(w, top, &config.backends, &config.pools);
    config.rate_limits = limits::read(w, top);
    config.redis = limits::redis(w, top);
    config.auth = auth::read(w, top);
    let names = routes::Names {
        pools: &config.pools,
        flat: top.get("backends").is_some(),
        limits: &config.rate_limits,
        auth: &config.auth,
    };
    config.routes = routes::read(w, top, &names, config.path_normalization.rules());
}
