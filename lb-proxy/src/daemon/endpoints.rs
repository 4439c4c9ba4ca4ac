//! The listeners a reload may move — the proxy, the redirect to HTTPS, the metrics endpoint,
//! the admin API — and how they move: every new address is bound before anything changes (so a bind failure leaves the
//! running configuration as it was), then the new listener serves before the old one closes.
//! At start, a listener taken over from a previous process is used when its address is the one
//! configured.

use std::net::SocketAddr;
use std::sync::Arc;

use lb_core::config::{Config, RedirectConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::control::{Control, Live, ReloadError};
use super::takeover::Inherited;
use super::{StartError, admin};
use crate::conn::ListenerKind;
use crate::listener::AcceptLoop;
use crate::proxy::edge::Redirect;
use crate::shutdown::Shutdown;

/// A bound listener, not yet served.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) listener: TcpListener,
    pub(crate) addr: SocketAddr,
}

/// The listeners of a daemon about to start.
#[derive(Debug)]
pub(crate) struct Prebound {
    pub(crate) proxy: Bound,
    pub(crate) redirect: Option<Bound>,
    pub(crate) metrics: Option<Bound>,
    pub(crate) admin: Option<Bound>,
}

/// Binds the listeners `config` asks for, taking over `inherited` ones where they match.
pub(crate) async fn bind_at_start(
    config: &Config,
    inherited: Inherited,
) -> Result<Prebound, StartError> {
    let bind_error = |(what, addr, source)| StartError::Bind { what, addr, source };
    let proxy = take_or_bind("proxy", config.server.listen, inherited.proxy)
        .await
        .map_err(bind_error)?;
    let redirect = match &config.server.http_redirect {
        Some(redirect) => Some(
            take_or_bind("redirect", redirect.listen, inherited.redirect)
                .await
                .map_err(bind_error)?,
        ),
        None => None,
    };
    let metrics = match config.metrics.enabled {
        true => Some(
            take_or_bind("metrics", config.metrics.listen, inherited.metrics)
                .await
                .map_err(bind_error)?,
        ),
        false => None,
    };
    let admin = match config.admin.enabled {
        true => Some(
            take_or_bind("admin", config.admin.listen, inherited.admin)
                .await
                .map_err(bind_error)?,
        ),
        false => None,
    };
    Ok(Prebound {
        proxy,
        redirect,
        metrics,
        admin,
    })
}

type BindFailure = (&'static str, SocketAddr, std::io::Error);

async fn take_or_bind(
    what: &'static str,
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> Result<Bound, BindFailure> {
    if let Some(socket) = inherited {
        match adopt(socket, addr) {
            Ok(Some(bound)) => return Ok(bound),
            Ok(None) => {}
            Err(error) => tracing::warn!(listener = what, %error, "inherited socket unusable"),
        }
    }
    bind(what, addr).await
}

/// An inherited socket, when it listens where `addr` asks (port 0: any port of that address).
fn adopt(socket: std::net::TcpListener, addr: SocketAddr) -> std::io::Result<Option<Bound>> {
    let local = socket.local_addr()?;
    let same = local == addr || (addr.port() == 0 && local.ip() == addr.ip());
    if !same {
        tracing::warn!(inherited = %local, configured = %addr, "inherited socket is not the configured address: binding anew");
        return Ok(None);
    }
    socket.set_nonblocking(true)?;
    let listener = TcpListener::from_std(socket)?;
    Ok(Some(Bound {
        listener,
        addr: local,
    }))
}

/// Binds `addr`; the bound address resolves port 0.
pub(crate) async fn bind(what: &'static str, addr: SocketAddr) -> Result<Bound, BindFailure> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| (what, addr, error))?;
    let addr = listener.local_addr().map_err(|error| (what, addr, error))?;
    Ok(Bound { listener, addr })
}

/// Accepts client traffic on `bound` (HTTPS when the daemon terminates TLS).
pub(crate) fn proxy(bound: Bound, control: &Arc<Control>) -> AcceptLoop {
    let kind = ListenerKind {
        tls: control.tls.clone(),
        redirect: None,
        hyper_http1: control.http1_reference,
    };
    AcceptLoop::start(
        Arc::new(bound.listener),
        bound.addr,
        kind,
        &control.shared,
        &control.limit,
        &control.tracker,
    )
}

/// Serves the redirect to HTTPS on `listener` with `settings`.
pub(crate) fn redirect_on(
    (listener, addr): (Arc<TcpListener>, SocketAddr),
    settings: &RedirectConfig,
    control: &Arc<Control>,
) -> AcceptLoop {
    let kind = ListenerKind {
        tls: None,
        redirect: Some(Arc::new(Redirect::new(settings))),
        hyper_http1: false,
    };
    AcceptLoop::start(
        listener,
        addr,
        kind,
        &control.shared,
        &control.limit,
        &control.tracker,
    )
}

/// A small HTTP endpoint being served.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The bound address.
    pub(crate) addr: SocketAddr,
    /// The socket, shared with the serving task.
    pub(crate) listener: Arc<TcpListener>,
    stop: Arc<Shutdown>,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Stops accepting; returns the serving task.
    pub(crate) fn stop(self) -> JoinHandle<()> {
        self.stop.start();
        self.task
    }
}

/// Serves metrics on `bound` at `config.metrics.path`.
pub(crate) fn metrics(bound: Bound, config: &Config, control: &Arc<Control>) -> Endpoint {
    metrics_on(Arc::new(bound.listener), bound.addr, config, control)
}

fn metrics_on(
    listener: Arc<TcpListener>,
    addr: SocketAddr,
    config: &Config,
    control: &Arc<Control>,
) -> Endpoint {
    let stop = Arc::new(Shutdown::default());
    let task = tokio::spawn(crate::metrics::serve(
        listener.clone(),
        config.metrics.path.clone(),
        control.shared.metrics.clone(),
        stop.clone(),
    ));
    Endpoint {
        addr,
        listener,
        stop,
        task,
    }
}

/// Serves the admin API on `bound`.
pub(crate) fn admin(bound: Bound, control: &Arc<Control>) -> Endpoint {
    let listener = Arc::new(bound.listener);
    let stop = Arc::new(Shutdown::default());
    let task = tokio::spawn(admin::serve(
        listener.clone(),
        Arc::downgrade(control),
        stop.clone(),
    ));
    Endpoint {
        addr: bound.addr,
        listener,
        stop,
        task,
    }
}

/// What a reload does to one endpoint.
#[derive(Debug)]
enum Plan {
    /// Nothing changes.
    Keep,
    /// Disabled: it stops.
    Stop,
    /// Same socket, new settings.
    Restart,
    /// A new address, already bound.
    Move(Bound),
}

/// The listeners a reload moves, bound before it changes anything.
#[derive(Debug)]
pub(crate) struct Rebinds {
    proxy: Option<Bound>,
    redirect: Plan,
    metrics: Plan,
    admin: Plan,
}

impl Rebinds {
    /// Binds every new address `new` asks for.
    pub(crate) async fn prepare(
        old: &Config,
        new: &Config,
        live: &Live,
    ) -> Result<Self, ReloadError> {
        let bind_error = |(what, addr, source)| ReloadError::Bind { what, addr, source };
        let proxy = match new.server.listen != old.server.listen {
            true => Some(bind("proxy", new.server.listen).await.map_err(bind_error)?),
            false => None,
        };
        let (old_redirect, new_redirect) = (&old.server.http_redirect, &new.server.http_redirect);
        let redirect = match (live.redirect.is_some(), new_redirect) {
            (false, None) => Plan::Keep,
            (true, None) => Plan::Stop,
            (running, Some(wanted))
                if !running || old_redirect.as_ref().map(|r| r.listen) != Some(wanted.listen) =>
            {
                Plan::Move(bind("redirect", wanted.listen).await.map_err(bind_error)?)
            }
            (true, Some(_)) if old_redirect != new_redirect => Plan::Restart,
            (_, Some(_)) => Plan::Keep,
        };
        let metrics = match (live.metrics.is_some(), new.metrics.enabled) {
            (false, false) => Plan::Keep,
            (true, false) => Plan::Stop,
            (running, true) if !running || new.metrics.listen != old.metrics.listen => Plan::Move(
                bind("metrics", new.metrics.listen)
                    .await
                    .map_err(bind_error)?,
            ),
            (true, true) if new.metrics.path != old.metrics.path => Plan::Restart,
            (_, true) => Plan::Keep,
        };
        let admin = match (live.admin.is_some(), new.admin.enabled) {
            (false, false) => Plan::Keep,
            (true, false) => Plan::Stop,
            (running, true) if !running || new.admin.listen != old.admin.listen => {
                Plan::Move(bind("admin", new.admin.listen).await.map_err(bind_error)?)
            }
            // The token is read per request from the control: no restart for it.
            (_, true) => Plan::Keep,
        };
        Ok(Self {
            proxy,
            redirect,
            metrics,
            admin,
        })
    }

    /// Serves the new listeners, then stops the old ones.
    pub(crate) fn install(self, control: &Arc<Control>, live: &mut Live, config: &Config) {
        if let Some(bound) = self.proxy {
            let fresh = proxy(bound, control);
            let old = std::mem::replace(&mut live.proxy, fresh);
            live.retired.push(old.retire());
        }
        let running = live.redirect.take();
        live.redirect = match (self.redirect, running, &config.server.http_redirect) {
            (Plan::Keep, running, _) => running,
            (Plan::Stop, running, _) | (_, running, None) => {
                live.retired.extend(running.map(AcceptLoop::retire));
                None
            }
            (Plan::Restart, Some(running), Some(settings)) => {
                let bound = (running.listener.clone(), running.addr);
                live.retired.push(running.retire());
                Some(redirect_on(bound, settings, control))
            }
            (Plan::Restart, None, Some(_)) => None,
            (Plan::Move(bound), running, Some(settings)) => {
                let fresh = redirect_on((Arc::new(bound.listener), bound.addr), settings, control);
                live.retired.extend(running.map(AcceptLoop::retire));
                Some(fresh)
            }
        };
        let metrics = match (self.metrics, live.metrics.take()) {
            (Plan::Keep, running) => running,
            (Plan::Stop, running) => {
                stop(running);
                None
            }
            (Plan::Restart, Some(running)) => {
                let (listener, addr) = (running.listener.clone(), running.addr);
                running.stop();
                Some(metrics_on(listener, addr, config, control))
            }
            (Plan::Restart, None) => None,
            (Plan::Move(bound), running) => {
                let fresh = metrics(bound, config, control);
                stop(running);
                Some(fresh)
            }
        };
        live.metrics = metrics;
        live.admin = match (self.admin, live.admin.take()) {
            (Plan::Keep, running) => running,
            // The admin API has no settings but its address: nothing restarts.
            (Plan::Restart, running) => running,
            (Plan::Stop, running) => {
                stop(running);
                None
            }
            (Plan::Move(bound), running) => {
                let fresh = admin(bound, control);
                stop(running);
                Some(fresh)
            }
        };
    }
}

/// Stops an endpoint that is being replaced; its task ends on its own.
fn stop(endpoint: Option<Endpoint>) {
    if let Some(endpoint) = endpoint {
        drop(endpoint.stop());
    }
}
