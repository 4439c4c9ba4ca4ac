//! `lb-observe`'s integration tests, in one test binary (`it`): the scrape against real HTTP
//! servers on 127.0.0.1, the admin client against a fake admin API, and scrape → parse → model on the demo's recorded scrapes served
//! over HTTP. The parser's and the model's own tests sit beside their code.
//!
//! # Layout
//! - `admin`: the admin client against a fake admin API: requests sent, answers and errors.
//! - `scrape`: each answer a metrics endpoint can give, and the typed error for each failure.
//! - `fuzz_corpus`: the `admin_answer` fuzz corpus replayed through its check.
//! - `pipeline`: recorded scrapes fetched, parsed and ingested, as `lb-tui` does.
//! - `support`: a tiny HTTP/1.1 server on port 0 that plays canned answers.

mod admin;
mod fuzz_corpus;
mod pipeline;
mod scrape;
mod support;
