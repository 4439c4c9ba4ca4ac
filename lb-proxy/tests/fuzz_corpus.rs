//! Replays fuzz/corpus/header_sanitise through the fuzz target's checks, on stable, in CI:
//! every seed and every saved finding stays a regression test.

#[path = "../../fuzz/src/header_check.rs"]
mod header_check;

#[test]
fn header_sanitise_corpus_holds_the_properties() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/header_sanitise");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        header_check::check(&data);
        replayed += 1;
    }
    assert!(replayed >= 4, "only {replayed} seeds in {}", dir.display());
}
