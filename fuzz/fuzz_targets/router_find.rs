//! The route matcher against a reference matcher (`portcullis::fuzzing::router`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::router(data));
