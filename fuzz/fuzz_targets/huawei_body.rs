//! Huawei VoiceCall push bodies (status and fee): no input may panic the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringback::sources::{huawei, ParseContext};

fuzz_target!(|body: &[u8]| {
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: chrono::DateTime::UNIX_EPOCH,
    };
    let _ = huawei::parse_body(body, &ctx);
});
