//! Replays the fuzz corpora of the HTTP/1.1 codec, the PROXY protocol parser, gRPC's fields,
//! W3C Trace Context, the HTTP/2 SETTINGS watcher and the quiet-reset watcher through the fuzz targets' checks, on
//! stable, in CI: every seed and every saved finding stays a regression test.

#[path = "../../../fuzz/src/chunked_check.rs"]
mod chunked_check;
#[path = "../../../fuzz/src/grpc_check.rs"]
mod grpc_check;
#[path = "../../../fuzz/src/h2_resets_check.rs"]
mod h2_resets_check;
#[path = "../../../fuzz/src/h2_settings_check.rs"]
mod h2_settings_check;
#[path = "../../../fuzz/src/header_check.rs"]
mod header_check;
#[path = "../../../fuzz/src/proxy_check.rs"]
mod proxy_check;
#[path = "../../../fuzz/src/request_check.rs"]
mod request_check;
#[path = "../../../fuzz/src/response_check.rs"]
mod response_check;
#[path = "../../../fuzz/src/traceparent_check.rs"]
mod traceparent_check;

fn replay(target: &str, check: fn(&[u8]), at_least: usize) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        check(&data);
        replayed += 1;
    }
    assert!(
        replayed >= at_least,
        "only {replayed} seeds in {}",
        dir.display()
    );
}

#[test]
fn header_sanitise_corpus_holds_the_properties() {
    replay("header_sanitise", header_check::check, 4);
}

#[test]
fn request_head_corpus_holds_the_properties() {
    replay("request_head", request_check::check, 10);
}

#[test]
fn response_head_corpus_holds_the_properties() {
    replay("response_head", response_check::check, 8);
}

#[test]
fn chunked_corpus_holds_the_properties() {
    replay("chunked", chunked_check::check, 6);
}

#[test]
fn proxy_header_corpus_holds_the_properties() {
    replay("proxy_header", proxy_check::check, 10);
}

#[test]
fn grpc_fields_corpus_holds_the_properties() {
    replay("grpc_fields", grpc_check::check, 8);
}

#[test]
fn traceparent_corpus_holds_the_properties() {
    replay("traceparent", traceparent_check::check, 12);
}

#[test]
fn h2_resets_corpus_holds_the_properties() {
    replay("h2_resets", h2_resets_check::check, 5);
}

#[test]
fn h2_settings_corpus_holds_the_properties() {
    replay("h2_settings", h2_settings_check::check, 6);
}
