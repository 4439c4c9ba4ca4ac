//! The policies the validated configuration carries, written back in the file's format: each
//! serializes as the fields of its section, durations as `"30s"`, in the order the reference
//! configuration lists them, so that `lb-cli show` prints a file that parses to an equal value.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::duration::format_duration;
use crate::breaker::BreakerPolicy;
use crate::health::HealthPolicy;
use crate::retry::{BudgetPolicy, RetryPolicy};

impl Serialize for BreakerPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("BreakerPolicy", 5)?;
        fields.serialize_field("failure_threshold", &self.failure_threshold())?;
        fields.serialize_field("open_duration", &format_duration(self.open_duration()))?;
        let max_open = format_duration(self.max_open_duration());
        fields.serialize_field("max_open_duration", &max_open)?;
        fields.serialize_field("half_open_max_requests", &self.half_open_max_requests())?;
        fields.serialize_field("success_threshold", &self.success_threshold())?;
        fields.end()
    }
}

impl Serialize for RetryPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("RetryPolicy", 4)?;
        fields.serialize_field("max_attempts", &self.max_attempts())?;
        fields.serialize_field("base_delay", &format_duration(self.base_delay()))?;
        fields.serialize_field("max_delay", &format_duration(self.max_delay()))?;
        fields.serialize_field("retry_on", self.retry_on())?;
        fields.end()
    }
}

impl Serialize for BudgetPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("BudgetPolicy", 2)?;
        fields.serialize_field("budget_ratio", &self.ratio())?;
        fields.serialize_field("budget_min_per_sec", &self.min_per_sec())?;
        fields.end()
    }
}

impl Serialize for HealthPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("HealthPolicy", 2)?;
        fields.serialize_field("unhealthy_threshold", &self.unhealthy_threshold)?;
        fields.serialize_field("healthy_threshold", &self.healthy_threshold)?;
        fields.end()
    }
}
