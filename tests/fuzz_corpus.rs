//! Replays every fuzz corpus and every saved crash (`fuzz/regressions/`)
//! through the checks the fuzz targets run (`portcullis::fuzzing`), so a
//! fixed crash stays fixed without running the fuzzer.

use std::path::Path;

/// A fuzz target's check.
type Check = fn(&[u8]);

/// (corpus directory, the target's check)
const TARGETS: [(&str, Check); 7] = [
    ("config", portcullis::fuzzing::config),
    ("router", portcullis::fuzzing::router),
    ("key_place", portcullis::fuzzing::key_place),
    ("request_id", portcullis::fuzzing::request_id),
    ("traceparent", portcullis::fuzzing::traceparent),
    ("cache_key", portcullis::fuzzing::cache_key),
    ("http1_request", portcullis::fuzzing::http1),
];

#[test]
fn every_corpus_and_saved_crash_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, check) in TARGETS {
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                let bytes = std::fs::read(&path).expect("corpus file");
                let outcome = std::panic::catch_unwind(|| check(&bytes));
                assert!(outcome.is_ok(), "{} fails its target", path.display());
                n += 1;
            }
        }
        assert!(n > 0, "no corpus for the {name} target");
    }
}
