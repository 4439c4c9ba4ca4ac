//! Replays fuzz/corpus/config_parse through the fuzz target's checks, on stable, in CI: every
//! seed and every saved finding stays a regression test.

#[path = "../../../fuzz/src/config_check.rs"]
mod config_check;

#[test]
fn config_parse_corpus_holds_the_properties() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_parse");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        config_check::check(&data);
        replayed += 1;
    }
    assert!(replayed >= 5, "only {replayed} seeds in {}", dir.display());
}

#[path = "../../../fuzz/src/route_check.rs"]
mod route_check;

#[test]
fn route_corpus_holds_the_properties() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/route");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        route_check::check(&std::fs::read(&path).expect("corpus file"));
        replayed += 1;
    }
    assert!(replayed >= 8, "only {replayed} seeds in {}", dir.display());
}

#[path = "../../../fuzz/src/discovery_check.rs"]
mod discovery_check;

#[test]
fn discovered_backends_corpus_holds_the_properties() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/discovered_backends");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        discovery_check::check(&std::fs::read(&path).expect("corpus file"));
        replayed += 1;
    }
    assert!(replayed >= 8, "only {replayed} seeds in {}", dir.display());
}
