//! The etcd v3 source: every key under a prefix is one backend, its value a JSON object like a
//! `backends` entry (etcd's v3 gRPC API over HTTP/2, plain or TLS, [`api`]; the files TLS and
//! authentication read, [`access`]).
//!
//! The prefix is listed once (a range read, which gives the store's revision), then watched from
//! the revision after it, so that no change between the two is missed. A watch never freezes
//! silently:
//! - its stream closing or failing (etcd restarted, the connection dropped) is seen, and the
//!   watch resumes from the revision after the last one seen (`lb_core::discovery::resume`);
//! - a watch cancelled because that revision was compacted lists the prefix again;
//! - every `keepalive` the watch is asked for a progress report (etcd answers with its current
//!   revision even when nothing changed); a watch that stays silent for two of these is taken as
//!   dead and resumed. Each report also renews `lb_discovery_last_update_timestamp_seconds`, so
//!   its age says how long the pool has been out of touch with etcd.
//!
//! Failures (no endpoint reachable, a TLS handshake refused, a request that times out, a wrong
//! password) publish nothing — the pool keeps its last good set — and are retried after a
//! backoff that doubles per failure in a row. A key whose value does not describe a backend is
//! logged and counted, and keeps the backend it had.
//!
//! With `username`, a session authenticates (`Auth.Authenticate`) and every call carries the
//! token. The token is kept for the sessions that follow, as etcd's own client does (each
//! authentication is a write through etcd's consensus and a bcrypt check). etcd forgets tokens
//! (a simple token unused for `--auth-token-ttl`, every token when it restarts): a call or a
//! watch refused for its token (invalid token, empty user, old auth revision, or a permission
//! denied to a token that worked before — etcd 3.4 says that for a watch) drops the token and
//! starts a new session at once, which authenticates again and resumes the watch where it was.
//! A token refused right after it was issued is a real failure (the user lacks the right to
//! read the prefix), logged and backed off like any other.

mod access;
mod api;

pub(super) use access::{AccessError, check};

use std::time::Duration;

use lb_core::config::{DiscoveryConfig, EtcdDiscovery};
use lb_core::discovery::{Backoff, KeyedSet, Resume, WatchEnd, resume};
use rand::RngExt;

use self::access::Access;
use self::api::{Client, ConnectError, Watch};
use super::Context;

/// Why the source lost touch with etcd.
#[derive(Debug, thiserror::Error)]
enum EtcdError {
    #[error("etcd: {0}")]
    Access(#[from] AccessError),
    #[error("etcd {endpoint}: {}", chain(error))]
    Connect {
        endpoint: String,
        error: ConnectError,
    },
    #[error("etcd: {}", .0.message())]
    Call(#[from] tonic::Status),
    /// `message` is etcd's: it never holds the password.
    #[error("etcd: authenticating as {username:?}: {message}")]
    Auth { username: String, message: String },
    #[error("etcd refused the source's token ({0})")]
    TokenRefused(String),
    #[error("etcd: no answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd: the watch stream closed")]
    Closed,
    #[error("etcd: the watch stayed silent for {0:?}")]
    Silent(Duration),
    #[error("etcd: the watch was cancelled: {0}")]
    Cancelled(String),
}

pub(super) async fn run(context: Context, etcd: EtcdDiscovery, settings: DiscoveryConfig) {
    let backoff =
        Backoff::try_new(settings.backoff_min, settings.backoff_max).unwrap_or_else(|_| {
            Backoff::try_new(Duration::from_secs(1), Duration::from_secs(60)).expect("valid")
        });
    let mut state = State {
        set: KeyedSet::default(),
        revision: 0,
        next: Resume::Relist,
        endpoint: 0,
        token: None,
    };
    let mut failures: u32 = 0;
    loop {
        // Boxed: the gRPC client's futures are large, and a session starts rarely.
        let outcome = Box::pin(session(&context, &etcd, &mut state, &mut failures)).await;
        let end = match outcome {
            Err(EtcdError::TokenRefused(reason)) => {
                tracing::info!(pool = %context.pool.name, %reason,
                    "etcd refused the token (expired, or etcd restarted): authenticating again");
                state.next = resume(WatchEnd::Closed, state.revision);
                continue;
            }
            Err(EtcdError::Cancelled(reason)) if reason.contains("compacted") => {
                tracing::warn!(pool = %context.pool.name, %reason, "etcd watch compacted: listing again");
                WatchEnd::Compacted
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                context.failed(&error);
                WatchEnd::Closed
            }
            Ok(()) => WatchEnd::Closed,
        };
        state.next = resume(end, state.revision);
        if end == WatchEnd::Closed {
            let jitter: f64 = rand::rng().random();
            tokio::time::sleep(backoff.delay(failures.max(1), jitter)).await;
        }
    }
}

/// What the source knows between sessions.
struct State {
    set: KeyedSet,
    /// The last revision whose changes are in `set`.
    revision: i64,
    /// How the next session starts.
    next: Resume,
    /// Which of the endpoints the next session tries first: the next one after a failure.
    endpoint: usize,
    /// The token of the last authentication, while etcd takes it.
    token: Option<String>,
}

/// One connection: authenticate (when needed), list (when needed), then watch until the watch
/// ends.
async fn session(
    context: &Context,
    etcd: &EtcdDiscovery,
    state: &mut State,
    failures: &mut u32,
) -> Result<(), EtcdError> {
    // Read again each session: rotated certificates and passwords are taken without a reload.
    let access = Access::load(etcd)?;
    let endpoint = &etcd.endpoints[state.endpoint % etcd.endpoints.len().max(1)];
    let connect = Box::pin(Client::connect(
        endpoint,
        &access,
        etcd.timeout,
        etcd.keepalive,
    ));
    let connected = tokio::time::timeout(etcd.timeout, connect).await;
    let mut client = match connected {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            state.endpoint = state.endpoint.wrapping_add(1);
            return Err(EtcdError::Connect {
                endpoint: endpoint.clone(),
                error,
            });
        }
        Err(_) => {
            state.endpoint = state.endpoint.wrapping_add(1);
            return Err(EtcdError::Timeout(etcd.timeout));
        }
    };
    let Some(credentials) = &access.credentials else {
        return follow(context, etcd, state, failures, &mut client).await;
    };
    let fresh = match &state.token {
        Some(token) => {
            client.use_token(token)?;
            false
        }
        None => {
            let asked = tokio::time::timeout(etcd.timeout, client.authenticate(credentials));
            let token = (asked.await)
                .map_err(|_| EtcdError::Timeout(etcd.timeout))?
                .map_err(|status| EtcdError::Auth {
                    username: credentials.username.clone(),
                    message: status.message().to_owned(),
                })?;
            state.token = Some(token);
            true
        }
    };
    match follow(context, etcd, state, failures, &mut client).await {
        Err(error) if refuses_token(&error) => {
            state.token = None;
            match fresh {
                true => Err(error),
                false => Err(EtcdError::TokenRefused(error.to_string())),
            }
        }
        other => other,
    }
}

/// Whether etcd refused a call or a watch for its token (see the module's documentation).
fn refuses_token(error: &EtcdError) -> bool {
    const REASONS: [&str; 4] = [
        "invalid auth token",
        "user name is empty",
        "revision of auth store is old",
        "permission denied",
    ];
    let said = |message: &str| REASONS.iter().any(|reason| message.contains(reason));
    match error {
        EtcdError::Call(status) => {
            status.code() == tonic::Code::Unauthenticated || said(status.message())
        }
        EtcdError::Cancelled(reason) => said(reason),
        _ => false,
    }
}

/// `error` and its sources, each once: tonic's transport error says only "transport error",
/// its sources say which (a refused connection, an unknown certificate issuer).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = inner.source();
    }
    text
}

/// Lists the prefix (when needed), then watches it until the watch ends.
async fn follow(
    context: &Context,
    etcd: &EtcdDiscovery,
    state: &mut State,
    failures: &mut u32,
    client: &mut Client,
) -> Result<(), EtcdError> {
    let start = match state.next {
        Resume::WatchFrom(revision) => revision,
        Resume::Relist => {
            let range = client.range_prefix(etcd.prefix.as_bytes());
            let listing = tokio::time::timeout(etcd.timeout, range)
                .await
                .map_err(|_| EtcdError::Timeout(etcd.timeout))??;
            for kv in &listing.kvs {
                put(context, &mut state.set, &kv.key, &kv.value);
            }
            state
                .set
                .retain_listed(listing.kvs.iter().map(|kv| kv.key.as_slice()));
            state.revision = listing.header.map_or(0, |h| h.revision);
            publish(context, &state.set);
            state.revision + 1
        }
    };
    let open = client.watch_prefix(etcd.prefix.as_bytes(), start);
    let mut stream = tokio::time::timeout(etcd.timeout, open)
        .await
        .map_err(|_| EtcdError::Timeout(etcd.timeout))??;
    *failures = 0;
    watch(context, etcd, state, &mut stream).await
}

/// Follows the watch until it ends; every answer (events or a progress report) proves it alive.
async fn watch(
    context: &Context,
    etcd: &EtcdDiscovery,
    state: &mut State,
    stream: &mut Watch,
) -> Result<(), EtcdError> {
    let silence = etcd.keepalive * 2;
    let mut last_heard = tokio::time::Instant::now();
    let mut ask = tokio::time::interval(etcd.keepalive);
    ask.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            message = stream.message() => message?,
            _ = ask.tick() => {
                if last_heard.elapsed() > silence {
                    return Err(EtcdError::Silent(silence));
                }
                stream.request_progress();
                continue;
            }
        };
        let Some(response) = message else {
            return Err(EtcdError::Closed);
        };
        last_heard = tokio::time::Instant::now();
        if response.canceled {
            let reason = match response.compact_revision {
                0 => response.cancel_reason,
                at => format!("revision {} compacted (now {at})", state.revision + 1),
            };
            return Err(EtcdError::Cancelled(reason));
        }
        let events = &response.events;
        for event in events {
            let Some(kv) = &event.kv else { continue };
            // A delete's key-value is a tombstone of version 0; a put's has version 1 or more.
            match kv.version {
                0 => state.set.delete(&kv.key),
                _ => put(context, &mut state.set, &kv.key, &kv.value),
            }
            state.revision = state.revision.max(kv.mod_revision);
        }
        if let Some(header) = &response.header {
            // A progress report: every change up to this revision has been sent.
            state.revision = state.revision.max(header.revision);
        }
        match events.is_empty() {
            true => context.alive(),
            false => publish(context, &state.set),
        }
    }
}

fn put(context: &Context, set: &mut KeyedSet, key: &[u8], value: &[u8]) {
    if let Err(errors) = set.put(&context.pool, key, value) {
        context.failed(&errors);
    }
}

/// Publishes the set, unless it is empty (a pool is never emptied by its source).
fn publish(context: &Context, set: &KeyedSet) {
    let backends = set.backends();
    if backends.is_empty() {
        context.failed(&"etcd: no backend under the prefix; the pool keeps its last set");
        return;
    }
    context.publish(backends);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_is_told_from_other_failures() {
        let call = |code, message: &str| EtcdError::Call(tonic::Status::new(code, message));
        let refused = [
            call(
                tonic::Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            call(tonic::Code::Unauthenticated, "anything"),
            call(
                tonic::Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            call(
                tonic::Code::FailedPrecondition,
                "etcdserver: revision of auth store is old",
            ),
            // etcd 3.4 cancels a watch created with an expired token this way.
            EtcdError::Cancelled(
                "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
                    .to_owned(),
            ),
            EtcdError::Cancelled(
                "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
                    .to_owned(),
            ),
        ];
        for error in &refused {
            assert!(refuses_token(error), "{error}");
        }
        let other = [
            call(tonic::Code::Unavailable, "etcdserver: leader changed"),
            EtcdError::Cancelled("revision 4 compacted (now 9)".to_owned()),
            EtcdError::Closed,
            EtcdError::Auth {
                username: "lb".to_owned(),
                message: "etcdserver: authentication failed, invalid user ID or password"
                    .to_owned(),
            },
        ];
        for error in &other {
            assert!(!refuses_token(error), "{error}");
        }
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = std::io::Error::other(inner);
        assert_eq!(chain(&outer), "invalid peer certificate: UnknownIssuer");
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Transport(#[source] std::io::Error);
        let error = Transport(std::io::Error::other("connection refused"));
        assert_eq!(chain(&error), "transport error: connection refused");
    }
}
