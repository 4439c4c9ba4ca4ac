//! The DNS source: A, AAAA or SRV records of one name (the `hickory-resolver` crate), asked
//! of the configured server or the system's. A good answer is published and the name asked
//! again after its smallest TTL, clamped to `[min_ttl, max_ttl]`; a failure — NXDOMAIN, an
//! empty answer, a timeout, an SRV answer none of whose targets resolve — publishes nothing
//! (the pool keeps its last good set) and the name is asked again after a backoff that doubles
//! per failure in a row up to `backoff_max`, with jitter, so a broken name is no query storm.
//!
//! The resolver keeps no cache: every lookup is asked of the server, so the TTL clamp here is
//! the only thing deciding how fresh the set is.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use lb_core::config::{BackendConfig, DiscoveryConfig, DnsDiscovery, RecordType};
use lb_core::discovery::{Backoff, SrvTarget, from_addresses, from_srv, refresh_after};
use rand::RngExt;

use super::Context;

/// Why a lookup gave no set.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("{name}: {source}")]
    Resolve {
        name: String,
        #[source]
        source: hickory_resolver::ResolveError,
    },
    #[error("{0}: the answer holds no usable record")]
    Empty(String),
    #[error("{0}: no answer in time")]
    Timeout(String),
}

pub(super) async fn run(context: Context, dns: DnsDiscovery, settings: DiscoveryConfig) {
    let backoff =
        Backoff::try_new(settings.backoff_min, settings.backoff_max).unwrap_or_else(|_| {
            Backoff::try_new(Duration::from_secs(1), Duration::from_secs(60)).expect("valid")
        });
    let mut failures: u32 = 0;
    // The system's configuration may be missing or broken for a while (a container starting):
    // tried again, backed off, like a failed lookup.
    let resolver = loop {
        match resolver(&dns) {
            Ok(resolver) => break resolver,
            Err(error) => {
                failures = failures.saturating_add(1);
                context.failed(&format!("cannot build a resolver: {error}"));
                let jitter: f64 = rand::rng().random();
                tokio::time::sleep(backoff.delay(failures, jitter)).await;
            }
        }
    };
    failures = 0;
    loop {
        let answer = tokio::time::timeout(dns.timeout, lookup(&resolver, &dns, &context)).await;
        let answer = answer.unwrap_or_else(|_| Err(LookupError::Timeout(dns.name.clone())));
        let wait = match answer {
            Ok((backends, ttl)) if !backends.is_empty() => {
                failures = 0;
                context.publish(backends);
                refresh_after(ttl, dns.min_ttl, dns.max_ttl)
            }
            Ok(_) => {
                failures = failures.saturating_add(1);
                context.failed(&LookupError::Empty(dns.name.clone()));
                backoff.delay(failures, rand::rng().random())
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                context.failed(&error);
                backoff.delay(failures, rand::rng().random())
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A resolver asking `dns.resolver` (UDP, then TCP for a truncated answer) or the system's
/// servers; no cache, no hosts file, one attempt per lookup (the loop above retries).
fn resolver(dns: &DnsDiscovery) -> Result<TokioResolver, hickory_resolver::ResolveError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = match dns.resolver {
        Some(server) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
            TokioResolver::builder_with_config(config, provider)
        }
        None => TokioResolver::builder(provider)?,
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = dns.timeout;
    options.attempts = 1;
    Ok(builder.build())
}

/// One lookup: the backends and the smallest TTL of the records they came from.
async fn lookup(
    resolver: &TokioResolver,
    dns: &DnsDiscovery,
    context: &Context,
) -> Result<(Vec<BackendConfig>, u32), LookupError> {
    let failed = |source| LookupError::Resolve {
        name: dns.name.clone(),
        source,
    };
    let name = dns.name.as_str();
    match dns.record {
        RecordType::A | RecordType::Aaaa => {
            let port = dns.port.unwrap_or(80);
            let (ips, records): (Vec<IpAddr>, Vec<u32>) = match dns.record {
                RecordType::A => {
                    let answer = resolver.ipv4_lookup(name).await.map_err(failed)?;
                    let ttl = answer
                        .as_lookup()
                        .records()
                        .iter()
                        .map(|r| r.ttl())
                        .collect();
                    (answer.iter().map(|a| IpAddr::V4(a.0)).collect(), ttl)
                }
                _ => {
                    let answer = resolver.ipv6_lookup(name).await.map_err(failed)?;
                    let ttl = answer
                        .as_lookup()
                        .records()
                        .iter()
                        .map(|r| r.ttl())
                        .collect();
                    (answer.iter().map(|a| IpAddr::V6(a.0)).collect(), ttl)
                }
            };
            let ttl = records.into_iter().min().unwrap_or(0);
            Ok((from_addresses(&context.pool, name, &ips, port), ttl))
        }
        RecordType::Srv => {
            let answer = resolver.srv_lookup(name).await.map_err(failed)?;
            let mut ttl = (answer.as_lookup().records().iter())
                .map(|r| r.ttl())
                .min()
                .unwrap_or(0);
            let mut targets = Vec::new();
            for record in answer.iter() {
                // A target of "." says the service is not available here (RFC 2782).
                if record.target().is_root() {
                    continue;
                }
                match resolver.lookup_ip(record.target().clone()).await {
                    Ok(ips) => {
                        let target_ttl = ips.as_lookup().records().iter().map(|r| r.ttl()).min();
                        ttl = ttl.min(target_ttl.unwrap_or(ttl));
                        targets.extend(ips.iter().map(|ip| SrvTarget {
                            priority: record.priority(),
                            weight: record.weight(),
                            address: SocketAddr::new(ip, record.port()),
                            host: record.target().to_ascii(),
                        }));
                    }
                    Err(error) => {
                        tracing::warn!(pool = %context.pool.name, target = %record.target(), %error,
                            "an SRV target does not resolve: left out");
                    }
                }
            }
            Ok((from_srv(&context.pool, &targets), ttl))
        }
    }
}
