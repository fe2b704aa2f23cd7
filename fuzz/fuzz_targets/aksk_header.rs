//! The X-AKSK header (Huawei's UsernameToken): no input may panic the parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringback::auth::aksk;

fuzz_target!(|data: &[u8]| {
    let _ = aksk::parse_header(&String::from_utf8_lossy(data));
});
