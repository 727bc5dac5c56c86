//! Client request ids: whatever is accepted is safe to log and forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::proxy::forward::is_well_formed_request_id;

fuzz_target!(|data: &[u8]| {
    if is_well_formed_request_id(data) {
        assert!(data.len() <= 128);
        assert!(data.iter().all(|b| b.is_ascii_graphic()));
    }
});
