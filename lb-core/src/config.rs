//! placeholder: filled by the config work.
