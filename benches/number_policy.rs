//! Cost of judging one dialled number on a warmed policy: the work done for every
//! INVITE before anything is sent to the carrier.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use trunkgate::numbers::{warm_up, NumberPolicy, NumbersConfig, Verdict};

fn number_policy(c: &mut Criterion) {
    warm_up();
    let policy = NumberPolicy::new(&NumbersConfig::default()).expect("default config is valid");
    // Check the inputs give the verdicts the bench names claim before timing them.
    assert!(matches!(policy.check("0501234567"), Verdict::Allowed(_)));
    assert!(matches!(policy.check("+447400123456"), Verdict::Refused(r) if r.code == 403));

    c.bench_function("check 0501234567 (allowed)", |b| {
        b.iter(|| policy.check(black_box("0501234567")))
    });
    c.bench_function("check +447400123456 (refused, foreign)", |b| {
        b.iter(|| policy.check(black_box("+447400123456")))
    });
}

criterion_group!(benches, number_policy);
criterion_main!(benches);
