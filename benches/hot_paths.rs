//! Hot paths besides Huawei parsing (`benches/parse.rs`): ACS parsing, building a batch's SQL,
//! encoding Kafka messages. Run: `cargo bench --bench hot_paths`.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use ringback::domain::{Record, Row};
use ringback::message;
use ringback::simulate::sample;
use ringback::sources::huawei;
use ringback::sources::{acs, Delivery, ParseContext};

fn ctx() -> ParseContext {
    ParseContext {
        source: "bench".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap(),
        region: None,
    }
}

fn fee_records() -> Vec<Record> {
    let body = sample::fee_body(1, 50, Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap());
    huawei::parse_body(body.to_string().as_bytes(), &ctx())
        .unwrap()
        .records
}

fn hot_paths(c: &mut Criterion) {
    let ctx = ctx();
    let batch = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/acs/callautomation_batch.json"
    ))
    .unwrap();
    let mut group = c.benchmark_group("acs_parse");
    group.throughput(Throughput::Elements(11));
    group.bench_function("call_automation_batch_11_events", |b| {
        b.iter(|| match acs::parse_body(black_box(&batch), &ctx).unwrap() {
            Delivery::Records(p) => p,
            Delivery::Validation { .. } => unreachable!(),
        })
    });
    group.finish();

    let records = fee_records();
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(records.len() as u64));
    let outbox: Vec<_> = records.iter().map(message::encode).collect();
    let rows: Vec<_> = records.iter().cloned().map(Row::Record).collect();
    group.bench_function("build_postgres_commit_50_cdrs", |b| {
        b.iter(|| ringback::store::bench::build_postgres_commit(black_box(&rows), &outbox))
    });
    group.finish();

    let mut group = c.benchmark_group("kafka");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("encode_50_cdr_messages", |b| {
        b.iter(|| {
            black_box(&records)
                .iter()
                .map(message::encode)
                .map(|e| (ringback::publish::kafka::headers(&e), e))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
