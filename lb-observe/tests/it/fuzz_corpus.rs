//! Replays the `admin_answer` fuzz corpus through the fuzz target's check, on stable, in CI:
//! every seed and every saved finding stays a regression test.

#[path = "../../../fuzz/src/admin_check.rs"]
mod admin_check;

#[test]
fn admin_answer_corpus_holds_the_properties() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/admin_answer");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        admin_check::check(&std::fs::read(&path).expect("corpus file"));
        replayed += 1;
    }
    assert!(replayed >= 10, "only {replayed} seeds in {}", dir.display());
}
