//! placeholder: filled by the breaker work.
