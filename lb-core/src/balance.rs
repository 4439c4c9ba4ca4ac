//! Balancing algorithms. (Being filled in: see the balance work.)

use serde::{Deserialize, Serialize};

/// The balancing algorithm named by `load_balancer.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Strict rotation over eligible backends.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (interleaved, as nginx does it).
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Uniform random choice.
    Random,
    /// Weight-proportional random choice.
    WeightedRandom,
    /// Consistent hashing on the client address (session affinity).
    IpHash,
    /// Power of two random choices by load.
    P2c,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::Random,
        Algorithm::WeightedRandom,
        Algorithm::IpHash,
        Algorithm::P2c,
    ];

    /// The name used in configuration files and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::Random => "random",
            Algorithm::WeightedRandom => "weighted_random",
            Algorithm::IpHash => "ip_hash",
            Algorithm::P2c => "p2c",
        }
    }
}
