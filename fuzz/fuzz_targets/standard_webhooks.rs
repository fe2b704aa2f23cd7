//! Standard Webhooks: the signature and timestamp headers, the secret, and the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringback::auth::standard_webhooks::{self as signatures, WebhookHeaders};
use ringback::sources::{standard_webhooks, ParseContext};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let secret = signatures::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let h = WebhookHeaders {
        id: "msg_1",
        timestamp: &text,
        signature: &text,
    };
    let now = chrono::DateTime::from_timestamp(1_614_265_330, 0).unwrap();
    let _ = signatures::verify(
        std::slice::from_ref(&secret),
        Some(&h),
        data,
        chrono::Duration::minutes(5),
        now,
    );
    let ctx = ParseContext {
        source: "sw".into(),
        received_at: now,
    };
    let _ = standard_webhooks::parse_body(data, Some(&h), "/type", &ctx);
    let _ = signatures::decode_secret(&text);
});
