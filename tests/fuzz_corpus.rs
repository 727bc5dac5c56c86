//! Replays the fuzz corpus and every saved crash through the config parser,
//! so a fixed crash stays fixed without running the fuzzer.

use std::path::Path;

#[test]
fn config_corpus_and_regressions_parse_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus/config", "regressions/config"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if let Err(errors) = portcullis::config::parse_str(text, "corpus.toml") {
                assert!(!errors.0.is_empty(), "{}: empty error list", path.display());
            }
            n += 1;
        }
    }
    assert!(n > 0, "no corpus files found");
}
