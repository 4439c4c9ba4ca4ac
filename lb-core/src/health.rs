//! Health hysteresis. (Being filled in: see the state-machines work.)

/// An inclusive range of HTTP status codes that a health probe accepts, `200-399` in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest accepted status, inclusive.
    pub min: u16,
    /// Highest accepted status, inclusive.
    pub max: u16,
}

impl StatusRange {
    /// Whether `status` lies within the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl Default for StatusRange {
    fn default() -> Self {
        Self { min: 200, max: 399 }
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}
