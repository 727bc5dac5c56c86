//! Replays every fuzz corpus and every saved crash (`fuzz/regressions/`)
//! through the checks the fuzz targets run (`portcullis::fuzzing`), so a
//! fixed crash stays fixed without running the fuzzer.

use std::path::Path;

/// A fuzz target's check.
type Check = fn(&[u8]);

/// (corpus directory, the target's check)
const TARGETS: [(&str, Check); 9] = [
    ("config", portcullis::fuzzing::config),
    ("router", portcullis::fuzzing::router),
    ("key_place", portcullis::fuzzing::key_place),
    ("request_id", portcullis::fuzzing::request_id),
    ("traceparent", portcullis::fuzzing::traceparent),
    ("cache_key", portcullis::fuzzing::cache_key),
    ("http1_request", portcullis::fuzzing::http1),
    ("request_target", portcullis::fuzzing::request_target),
    ("jwt", portcullis::fuzzing::jwt),
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

/// The request-target normalizer against its reference on 200,000
/// targets made of the pieces attacks are made of (a fixed seed, so a
/// failure repeats): between the corpus replays and a fuzzing run.
#[test]
fn the_target_normalizer_agrees_with_its_reference_on_random_targets() {
    const PIECES: &[&str] = &[
        "/", "/", "/", "a", "b", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", ";", "%3b", "%41",
        "%7e", "%00", "%c0", "%ae", "%zz", "%", "~", "?", "&", "=", "%25", "\u{e9}", "\"", " ",
        "//", "@", ":",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        let mut target = String::from("/");
        for _ in 0..(next() % 9) {
            target.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        portcullis::fuzzing::request_target(target.as_bytes());
    }
}
