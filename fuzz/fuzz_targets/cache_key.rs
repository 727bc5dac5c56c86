//! Cache key normalization and request `Cache-Control` (`portcullis::fuzzing::cache_key`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::cache_key(data));
