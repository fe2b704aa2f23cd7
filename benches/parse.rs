//! Hot path: parsing and validating Huawei bodies (bytes → domain records).
//! Run: `cargo bench --bench parse`.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use ringback::simulate::sample;
use ringback::sources::huawei;
use ringback::sources::ParseContext;

fn parse(c: &mut Criterion) {
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: end,
        region: None,
    };
    let mut group = c.benchmark_group("huawei_parse");
    for n in [1usize, 50] {
        let body = sample::fee_body(1, n, end).to_string().into_bytes();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("fee_body_{n}_records"), |b| {
            b.iter(|| {
                let parsed = huawei::parse_body(black_box(&body), &ctx).unwrap();
                assert_eq!(parsed.records.len(), n);
                parsed
            })
        });
    }
    let status = sample::status_body(
        "disconnect",
        "1201_612_1_1@callenabler245.huaweicaas.com",
        end,
    )
    .to_string()
    .into_bytes();
    group.throughput(Throughput::Elements(1));
    group.bench_function("status_disconnect", |b| {
        b.iter(|| huawei::parse_body(black_box(&status), &ctx).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
