//! Protocol codecs: pure code that turns bytes into typed verdicts and back.

pub mod h1;
