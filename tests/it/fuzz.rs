//! Mutation fuzzing of every body parser and every auth-header parser, on the stable toolchain.
//!
//! Each target starts from a corpus of real inputs (the fixtures) and feeds mutants: bytes
//! flipped, inserted, deleted, duplicated, truncated, spliced from another input, and
//! "interesting" tokens (`{`, `"`, `\u0000`, huge numbers, deep nesting). It is random, not
//! coverage-guided (cargo-fuzz needs a nightly compiler); its job is to show that no input
//! makes a parser panic, loop or blow the stack. A run is reproducible from its seed.
//!
//! CI: `cargo test --test it fuzz::` (RINGBACK_FUZZ_ITERS defaults to 20 000 per target).
//! Longer: `RINGBACK_FUZZ_ITERS=1000000 cargo test --release --test it fuzz:: -- --nocapture`.

use std::time::Instant;

use chrono::{TimeZone, Utc};

use ringback::auth::aksk;
use ringback::auth::standard_webhooks::{self as signatures, WebhookHeaders};
use ringback::simulate::sample;
use ringback::sources::standard_webhooks;
use ringback::sources::{acs, huawei, ParseContext};

/// xorshift64*: small, fast, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-0",
    b"1e999999",
    b"184467440737095516150",
    b"0.0000001",
    b"\xff",
    b"\xc3\x28",
    b"\"eventType\"",
    b"\"fee\"",
    b"\"feeLst\"",
    b"\"statusInfo\"",
    b"\"specversion\"",
    b"\"data\"",
    b"[[[[[[[[[[[[[[[[",
    b"Username=",
    b"PasswordDigest=\"",
    b"v1,",
    b" ",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => out.truncate(at),
            4 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let piece: Vec<u8> = other[from..(from + rng.below(64)).min(other.len())].to_vec();
                out.splice(at..at, piece);
            }
            _ if at < out.len() => {
                let end = (at + rng.below(32)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            _ => {}
        }
    }
    out
}

fn iterations() -> u64 {
    std::env::var("RINGBACK_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn fuzz(name: &str, corpus: Vec<Vec<u8>>, target: impl Fn(&[u8])) {
    let seed = std::env::var("RINGBACK_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005e_ed0f_f022_u64);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let n = iterations();
    for input in &corpus {
        target(input);
    }
    for _ in 0..n {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        target(&input);
    }
    eprintln!(
        "fuzz {name}: {n} inputs (seed {seed}) in {:.1}s, no panic",
        started.elapsed().as_secs_f64()
    );
}

fn ctx() -> ParseContext {
    ParseContext {
        source: "fuzz".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap(),
        region: None,
    }
}

fn fixtures(dir: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&path)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            p.is_file().then(|| std::fs::read(p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn huawei_bodies() {
    let mut corpus = fixtures("huawei");
    corpus.push(sample::fee_body(1, 3, Utc::now()).to_string().into_bytes());
    let ctx = ctx();
    fuzz("huawei body", corpus, |b| {
        let _ = huawei::parse_body(b, &ctx);
    });
}

#[test]
fn acs_bodies() {
    let mut corpus = fixtures("acs/eventgrid");
    corpus.extend(fixtures("acs/cloudevents"));
    corpus.extend(fixtures("acs/callautomation"));
    let ctx = ctx();
    fuzz("acs body", corpus, |b| {
        let _ = acs::parse_body(b, &ctx);
    });
}

#[test]
fn standard_webhooks_bodies_and_headers() {
    let corpus = vec![
        br#"{"type": "invoice.paid", "data": {"amount": 42}}"#.to_vec(),
        b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,AAAA".to_vec(),
        b"1614265330".to_vec(),
    ];
    let ctx = ctx();
    let secret = signatures::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let now = Utc.timestamp_opt(1614265330, 0).unwrap();
    fuzz("standard-webhooks", corpus, |b| {
        let text = String::from_utf8_lossy(b);
        let h = WebhookHeaders {
            id: "msg_1",
            timestamp: &text,
            signature: &text,
        };
        let _ = signatures::verify(
            std::slice::from_ref(&secret),
            Some(&h),
            b,
            chrono::Duration::minutes(5),
            now,
        );
        let _ = standard_webhooks::parse_body(b, Some(&h), "/type", &ctx);
        let _ = signatures::decode_secret(&text);
    });
}

#[test]
fn aksk_headers() {
    let corpus = vec![
        br#"UsernameToken Username="ka4kESI5s3YyurL1wpx63s9YnEm2", PasswordDigest="gcCBdyr0k9f7XHvLWB1mBTYFTkOCloAYLMB57LAYyuM=", Nonce="abc123", Created="2026-11-21T08:00:00Z""#.to_vec(),
        br#"UsernameToken Nonce="n",Created="2026-11-21T08:00:00Z" ,Username="k", PasswordDigest="ZA==""#.to_vec(),
    ];
    fuzz("x-aksk header", corpus, |b| {
        let _ = aksk::parse_header(&String::from_utf8_lossy(b));
    });
}

#[test]
fn shared_secret_and_bearer_headers() {
    use ringback::auth::shared_secret::SharedSecret;
    use ringback::auth::Secret;
    let secret = SharedSecret {
        secret: Secret::new("s3cr3t"),
        query: "code".into(),
        header: "x-ringback-secret".into(),
    };
    let corpus = vec![
        b"code=s3cr3t&x=1".to_vec(),
        b"code=%73%33cr3t;code=&code".to_vec(),
        b"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJhdWQiOiJ4In0.c2ln".to_vec(),
    ];
    fuzz("shared secret / bearer", corpus, |b| {
        let text = String::from_utf8_lossy(b);
        let _ = secret.verify(&text, Some(&text));
        let token = text.strip_prefix("Bearer ").unwrap_or(&text);
        let _ = jsonwebtoken::decode_header(token);
    });
}
