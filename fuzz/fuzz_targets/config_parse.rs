//! Any text through parse + validate: never a panic, and every error
//! carries a location inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = portcullis::config::parse_str(text, "fuzz.toml") {
        assert!(!errors.0.is_empty());
        let lines = text.lines().count().max(1) + 1;
        for e in &errors.0 {
            assert!(e.line <= lines, "error line {} beyond the file: {e}", e.line);
        }
    }
});
