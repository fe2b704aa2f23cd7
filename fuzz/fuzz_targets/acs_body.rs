//! ACS deliveries (Event Grid, CloudEvents, Call Automation): no input may panic the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringback::sources::{acs, ParseContext};

fuzz_target!(|body: &[u8]| {
    let ctx = ParseContext {
        source: "acs".into(),
        received_at: chrono::DateTime::UNIX_EPOCH,
    };
    let _ = acs::parse_body(body, &ctx);
});
