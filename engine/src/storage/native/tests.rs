//! Native histograms against exact models: bucket keys against integer arithmetic, cells against a
//! model that buckets every value on its own, moves and halvings against the same values recorded
//! without them, and concurrent moves against exact totals.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::index::{self, key, reduce, MAX_SCHEMA, MIN_SCHEMA, OCTAVE_256};
use super::*;
use crate::shard::{Shard, ShardLayout};

/// `a * b`, little-endian `u64` limbs.
fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut r = vec![0u64; a.len() + b.len()];
    for (i, &x) in a.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &y) in b.iter().enumerate() {
            let t = u128::from(r[i + j]) + u128::from(x) * u128::from(y) + carry;
            r[i + j] = t as u64;
            carry = t >> 64;
        }
        let mut k = i + b.len();
        while carry != 0 {
            let t = u128::from(r[k]) + carry;
            r[k] = t as u64;
            carry = t >> 64;
            k += 1;
        }
    }
    while r.last() == Some(&0) {
        r.pop();
    }
    r
}

/// `m^(2^k)`.
fn pow_pow2(m: u64, k: u32) -> Vec<u64> {
    let mut x = vec![m];
    for _ in 0..k {
        x = mul(&x, &x);
    }
    x
}

/// How `x` compares with `2^e`.
fn cmp_pow2(x: &[u64], e: u64) -> std::cmp::Ordering {
    let top = x.last().expect("non-zero");
    let log = (x.len() as u64 - 1) * 64 + 63 - u64::from(top.leading_zeros());
    let exact = top.is_power_of_two() && x[..x.len() - 1].iter().all(|&l| l == 0);
    log.cmp(&e).then(if exact {
        std::cmp::Ordering::Equal
    } else {
        std::cmp::Ordering::Greater
    })
}

/// Each bound's mantissa `M = 2^52 + bits` is `2^(j/256)` rounded down: `M^256 <= 2^(j + 52·256)
/// < (M + 1)^256`.
#[test]
fn octave_bounds_are_exact() {
    use std::cmp::Ordering::*;
    for (j, &bits) in OCTAVE_256.iter().enumerate() {
        let m = (1u64 << 52) + bits;
        let e = j as u64 + 52 * 256;
        assert_ne!(cmp_pow2(&pow_pow2(m, 8), e), Greater, "bound {j} is above 2^({j}/256)");
        assert_eq!(
            cmp_pow2(&pow_pow2(m + 1, 8), e),
            Greater,
            "bound {j} is more than one ulp low"
        );
    }
}

/// The key of `|v|` (finite, non-zero) at schema `s` by exact arithmetic: the smallest `i` with
/// `|v| <= 2^(i·2^-s)`. With `|v| = M·2^E`, at schema 8 that is `256·E + floor(log2(M^256))`,
/// plus one unless `M` is a power of two; lower schemas' buckets are unions of schema 8's
/// (`ceil(i / 2^(8-s))`).
fn exact_key(v: f64, s: i32) -> i32 {
    let bits = v.abs().to_bits();
    let (exp, mant) = ((bits >> 52) as i64, bits & ((1 << 52) - 1));
    let (mut m, mut e) = if exp == 0 {
        (mant, -1074)
    } else {
        (mant | (1 << 52), exp - 1075)
    };
    let tz = m.trailing_zeros();
    m >>= tz;
    e += i64::from(tz);
    let p = pow_pow2(m, 8);
    let top = p.last().expect("non-zero");
    let log = (p.len() as i64 - 1) * 64 + 63 - i64::from(top.leading_zeros());
    let k8 = 256 * e + log + i64::from(m != 1);
    reduce(k8 as i32, (MAX_SCHEMA - s) as u32)
}

/// The model's key of any non-zero, non-NaN value: ±Inf one above `f64::MAX`'s.
fn model_key(v: f64, s: i32) -> i32 {
    if v.is_infinite() {
        exact_key(f64::MAX, s) + 1
    } else {
        exact_key(v, s)
    }
}

/// The schema-8 bound `i` (rounded down), for normal results.
fn bound(i: i32) -> f64 {
    let (o, c) = (i.div_euclid(256), i.rem_euclid(256) as usize);
    f64::from_bits((((o + 1023) as u64) << 52) | OCTAVE_256[c])
}

fn next_up(v: f64) -> f64 {
    f64::from_bits(v.to_bits() + 1)
}

fn next_down(v: f64) -> f64 {
    f64::from_bits(v.to_bits() - 1)
}

fn check_key(v: f64) {
    for s in MIN_SCHEMA..=MAX_SCHEMA {
        assert_eq!(
            key(v.abs().to_bits(), s),
            model_key(v, s),
            "v = {v:e} ({:#x}), schema {s}",
            v.to_bits()
        );
    }
}

#[test]
fn keys_at_bounds_and_extremes() {
    let mut values = vec![
        1.0,
        2.0,
        0.5,
        1.1,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits((1 << 52) - 1),
        f64::INFINITY,
    ];
    // Every schema-8 bound of two octaves, its neighbours, and the same at the ends of the range.
    for i in (-512..512)
        .chain(1021 * 256..1024 * 256)
        .chain(-1022 * 256..-1020 * 256)
    {
        let b = bound(i);
        values.extend([b, next_up(b), next_down(b)]);
    }
    for v in values {
        check_key(v);
        check_key(-v);
    }
    // What Prometheus' docs give: at schema 3, (1, 2^(1/8)] is bucket 1, 1.0 is bucket 0.
    assert_eq!(key(1.0f64.to_bits(), 3), 0);
    assert_eq!(key(1.05f64.to_bits(), 3), 1);
    assert_eq!(key(4.0f64.to_bits(), 0), 2);
    assert_eq!(key(5.0f64.to_bits(), -1), 2, "(4, 16] at schema -1");
    assert_eq!(key(f64::INFINITY.to_bits(), 3), 1024 * 8 + 1);
}

#[test]
fn schema_from_factor_as_client_golang() {
    for (factor, schema) in [
        (1.1, 3),
        (2.0, 0),
        (1.5, 1),
        (4.0, -1),
        (65536.0, -4),
        (1e300, -4),
        (1.0001, 8),
        (1.003, 8),
        (1.006, 7),
        (1.005, 8),
    ] {
        assert_eq!(index::pick_schema(factor), schema, "factor {factor}");
    }
}

/// The lookup's 512 intervals each hold at most one bound of schema 8 (so of any schema): what
/// the one compare relies on.
#[test]
fn one_bound_per_interval() {
    for j in 0..512u64 {
        let (lo, hi) = (j << 43, (j + 1) << 43);
        let inside = OCTAVE_256.iter().filter(|&&b| b >= lo && b < hi).count();
        assert!(inside <= 1, "interval {j}: {inside} bounds");
    }
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        // A schema-8 bound, its neighbours, anywhere in the range.
        (-1074 * 256..1024 * 256i32, 0..3usize).prop_map(|(i, k)| {
            let b = if i >= -1022 * 256 {
                bound(i)
            } else {
                f64::from_bits(1 + (i.unsigned_abs() as u64 % 1000))
            };
            [b, next_up(b), next_down(b)][k]
        }),
        (1u64..1 << 52).prop_map(f64::from_bits),
        -1e3..1e3f64,
        1e-9..1e-3f64,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The key at every schema against the exact model, for any value (NaN and zero have none).
    #[test]
    fn keys_match_exact_arithmetic(v in value_strategy()) {
        if !v.is_nan() && v != 0.0 {
            for s in MIN_SCHEMA..=MAX_SCHEMA {
                prop_assert_eq!(key(v.abs().to_bits(), s), model_key(v, s), "v = {:e}, schema {}", v, s);
            }
        }
    }
}

fn spec(config: NativeConfig, classic: Option<&[f64]>) -> Arc<NativeSpec> {
    let classic = classic.map(|b| Arc::new(Buckets::new(b)));
    Arc::new(config.check("test", classic).expect("valid config"))
}

/// What a read gave: schema, zero count, count, sum, and counts by (negative, key).
struct Read {
    schema: i32,
    zero: u64,
    count: u64,
    sum: f64,
    buckets: BTreeMap<(bool, i32), u64>,
    cumulative: Vec<u64>,
}

/// Reads `h`, checking the spans' shape on the way (a gap of more than two empty buckets between
/// spans, at most two inside one; no empty span).
fn read(h: &NativeCells) -> Read {
    let mut scratch = NativeScratch::default();
    let r = h.snapshot(&mut scratch);
    let mut buckets = BTreeMap::new();
    for (neg, spans, counts) in [
        (false, &scratch.positive_spans, &scratch.positive_counts),
        (true, &scratch.negative_spans, &scratch.negative_counts),
    ] {
        let mut k = 0;
        let mut counts = counts.iter();
        for (n, s) in spans.iter().enumerate() {
            assert!(s.length > 0, "empty span {spans:?}");
            assert!(n == 0 || s.offset > 2, "spans {spans:?} split at a gap of 2 or less");
            k += s.offset;
            let mut run = 0;
            for i in 0..s.length {
                let c = *counts.next().expect("a count per bucket");
                if c == 0 {
                    run += 1;
                    assert!(run <= 2 && i + 1 < s.length && i > 0, "spans {spans:?} keep a gap of 3");
                } else {
                    run = 0;
                    buckets.insert((neg, k), c);
                }
                k += 1;
            }
        }
        assert!(counts.next().is_none(), "counts past the spans");
    }
    Read {
        schema: r.schema,
        zero: r.zero_count,
        count: r.count,
        sum: r.sum,
        buckets,
        cumulative: scratch.cumulative.clone(),
    }
}

/// The model: every value bucketed on its own at `schema`.
fn model(values: &[f64], zero_threshold: f64, schema: i32) -> (u64, u64, BTreeMap<(bool, i32), u64>) {
    let (mut zero, mut nan, mut b) = (0, 0, BTreeMap::new());
    for &v in values {
        if v.is_nan() {
            nan += 1;
        } else if v.abs() <= zero_threshold {
            zero += 1;
        } else {
            *b.entry((v < 0.0, model_key(v, schema))).or_insert(0) += 1;
        }
    }
    (zero, nan, b)
}

fn check_against_model(h: &NativeCells, config: NativeConfig, values: &[f64]) -> Read {
    let r = read(h);
    let (zero, nan, buckets) = model(values, config.zero_threshold, r.schema);
    assert!(
        r.schema <= config.schema(),
        "schema {} above the configured one",
        r.schema
    );
    assert_eq!(r.zero, zero, "zero bucket");
    assert_eq!(r.buckets, buckets, "buckets at schema {}", r.schema);
    assert_eq!(r.count, values.len() as u64, "count");
    assert_eq!(r.count, zero + nan + buckets.values().sum::<u64>());
    assert!(
        r.buckets.len() <= config.max_buckets as usize || r.schema == MIN_SCHEMA,
        "{} buckets at schema {}, limit {}",
        r.buckets.len(),
        r.schema,
        config.max_buckets
    );
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Values recorded into one exclusive and one shared shard, with small bucket limits that
    /// force moves and halvings, against the model at the schema the read reports; the sum of an
    /// exclusive shard is the values added in order.
    #[test]
    fn cells_match_the_model(values in proptest::collection::vec(value_strategy(), 0..200),
                             factor in prop_oneof![Just(1.1), 1.0001..70000.0f64],
                             max_buckets in 1..200u32,
                             zero_threshold in prop_oneof![Just(2.938735877055719e-39), Just(0.0), 0.0..1.0f64],
                             shared in any::<bool>()) {
        let config = NativeConfig { bucket_factor: factor, zero_threshold, max_buckets };
        let h = NativeCells::new(ShardLayout::new(4), spec(config, None));
        let shard = if shared { Shard { index: 3, exclusive: false } } else { Shard { index: 0, exclusive: true } };
        for &v in &values {
            h.record_n_at(shard, v, 1);
        }
        let r = check_against_model(&h, config, &values);
        let sum = values.iter().fold(0.0, |a, &v| a + v);
        prop_assert!(r.sum.to_bits() == sum.to_bits() || (r.sum.is_nan() && sum.is_nan()), "sum {} vs {}", r.sum, sum);
    }
}

/// The same values with a bucket limit that halves the resolution and without one: each merged
/// bucket is the sum of the buckets it covers, the count and the sum are the same.
#[test]
fn halving_merges_pairs() {
    let values: Vec<f64> = (0..5000)
        .map(|i| {
            let x = f64::from(i) * 0.37;
            (x.sin() * 20.0).exp2() * if i % 7 == 0 { -1.0 } else { 1.0 }
        })
        .collect();
    let wide = NativeConfig {
        max_buckets: 4096,
        ..NativeConfig::default()
    };
    let narrow = NativeConfig {
        max_buckets: 40,
        ..NativeConfig::default()
    };
    let record = |config| {
        let h = NativeCells::new(ShardLayout::new(4), spec(config, None));
        for (i, &v) in values.iter().enumerate() {
            h.record_n_at(
                Shard {
                    index: i % 3,
                    exclusive: true,
                },
                v,
                1,
            );
        }
        check_against_model(&h, config, &values)
    };
    let (a, b) = (record(wide), record(narrow));
    assert_eq!(a.schema, 3, "4,096 buckets hold 40 octaves at schema 3");
    assert!(b.schema < 3 && b.buckets.len() <= 40, "schema {}", b.schema);
    let mut merged = BTreeMap::new();
    for (&(neg, k), &c) in &a.buckets {
        *merged
            .entry((neg, reduce(k, (a.schema - b.schema) as u32)))
            .or_insert(0) += c;
    }
    assert_eq!(b.buckets, merged);
    assert_eq!((a.count, a.zero), (b.count, b.zero));
    assert!(
        (a.sum - b.sum).abs() <= 1e-9 * a.sum.abs(),
        "sums {} and {}",
        a.sum,
        b.sum
    );
}

/// Classic and native together: the classic part counts as a classic histogram, its `+Inf` is
/// the native count.
#[test]
fn classic_and_native() {
    let config = NativeConfig::default();
    let h = NativeCells::new(ShardLayout::new(4), spec(config, Some(&[0.1, 1.0])));
    let values = [0.05, 0.1, 0.5, 2.0, f64::NAN, -3.0, 0.0];
    for &v in &values {
        h.record(v);
    }
    let r = check_against_model(&h, config, &values);
    assert_eq!(
        r.cumulative,
        vec![4, 5, 7],
        "-3, 0, 0.05, 0.1 <= 0.1; 0.5 <= 1; 2 and NaN in +Inf"
    );
    let native_only = NativeCells::new(ShardLayout::new(4), spec(config, None));
    native_only.record(1.0);
    assert_eq!(read(&native_only).cumulative, vec![1], "only +Inf");
}

/// Writers on two exclusive shards and two on a shared one, with values spread so wide that
/// shards move and halve all the time, while a reader checks every read: the count is the zero
/// bucket plus the buckets and never goes down, the schema never goes up, the classic part stays
/// cumulative under the count. At the
/// end, the totals are exact.
#[test]
fn concurrent_moves_lose_nothing() {
    const PER_THREAD: usize = 20_000;
    let config = NativeConfig {
        max_buckets: 24,
        ..NativeConfig::default()
    };
    let h = Arc::new(NativeCells::new(ShardLayout::new(4), spec(config, Some(&[1.0, 1e6]))));
    let value = |t: usize, i: usize| -> f64 {
        let x = ((i * 7919 + t * 104_729) % 100_003) as f64 / 100_003.0;
        let v = (x * 120.0 - 60.0).exp2();
        if i % 5 == t {
            -v
        } else if i.is_multiple_of(97) {
            0.0
        } else {
            v
        }
    };
    let shards = [(0, true), (1, true), (3, false), (3, false)];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (h, done) = (Arc::clone(&h), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut last, mut reads, mut schema) = (0, 0, 3);
            while !done.load(Relaxed) || reads == 0 {
                let r = read(&h);
                assert_eq!(r.count, r.zero + r.buckets.values().sum::<u64>(), "read {reads}");
                assert!(r.count >= last, "count went down: {last} -> {}", r.count);
                assert!(r.schema <= schema, "schema went up: {schema} -> {}", r.schema);
                schema = r.schema;
                assert!(r.cumulative.windows(2).all(|w| w[0] <= w[1]), "{:?}", r.cumulative);
                assert_eq!(*r.cumulative.last().unwrap(), r.count);
                last = r.count;
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(t, (index, exclusive))| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    h.record_n_at(Shard { index, exclusive }, value(t, i), 1);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Relaxed);
    let reads = reader.join().unwrap();
    let all: Vec<f64> = (0..4).flat_map(|t| (0..PER_THREAD).map(move |i| value(t, i))).collect();
    let r = check_against_model(&h, config, &all);
    assert!(r.schema < 3, "the spread halved the resolution");
    assert!(reads > 0);
}

/// Bytes of cells of one native series at the defaults, with the manager's default shard count
/// on this machine (the module docs give the figure for 4 shards).
#[test]
fn native_memory_per_series() {
    let shards = crate::MetricsManager::new().shards();
    let h = NativeCells::new(ShardLayout::new(shards), spec(NativeConfig::default(), None));
    assert_eq!(h.cap, 160, "the default limit holds every key at schema -4");
    assert_eq!(h.cell_bytes(), shards as usize * 11 * 128);
    let zero = NativeConfig {
        zero_threshold: 0.0,
        ..NativeConfig::default()
    };
    let h0 = NativeCells::new(ShardLayout::new(shards), spec(zero, None));
    assert_eq!(h0.cap, 266, "133 keys per sign at schema -4 from 2^-1074 to +Inf");
    println!(
        "native series: {} bytes of cells + {} bytes header ({} shards)",
        h.cell_bytes(),
        std::mem::size_of::<NativeCells>(),
        shards
    );
}

#[test]
fn config_errors_name_the_setting() {
    let m = crate::MetricsManager::new();
    for (config, want) in [
        (
            NativeConfig {
                bucket_factor: 1.0,
                ..NativeConfig::default()
            },
            "native histogram `h`: bucket_factor must be a finite factor above 1, got 1",
        ),
        (
            NativeConfig {
                zero_threshold: f64::NAN,
                ..NativeConfig::default()
            },
            "native histogram `h`: zero_threshold must be a finite value >= 0, got NaN",
        ),
        (
            NativeConfig {
                max_buckets: 0,
                ..NativeConfig::default()
            },
            "native histogram `h`: max_buckets must be 1 to 4096, got 0",
        ),
    ] {
        let err = m.register_native_histogram("h", "", &[], config).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    m.register_native_histogram("h", "", &[], NativeConfig::default())
        .unwrap();
    let err = m.register_histogram("h", "", &[], &[]).unwrap_err();
    assert!(err.to_string().contains("native buckets (schema 3"), "{err}");
}

/// A facade histogram a native matcher matches is native; with a bucket matcher too, both.
#[test]
fn facade_matchers() {
    let m = crate::MetricsManager::builder()
        .set_native_histogram_for_metric(crate::Matcher::Suffix("_seconds".into()), NativeConfig::default())
        .unwrap()
        .set_buckets_for_metric(crate::Matcher::Full("db_seconds".into()), &[0.5])
        .unwrap()
        .build();
    metrics::with_local_recorder(&m.recorder(), || {
        metrics::histogram!("rpc_seconds").record(0.25);
        metrics::histogram!("db_seconds").record(0.25);
        metrics::histogram!("size_bytes").record(0.25);
    });
    let mut seen = BTreeMap::new();
    m.visit(|f| {
        let name = f.name().to_owned();
        f.for_each_series(|_, v| {
            if let crate::SeriesValue::Histogram {
                bounds,
                cumulative,
                native,
                ..
            } = v
            {
                let native = native.map(|n| (n.schema, n.positive_spans.to_vec(), n.positive_counts.to_vec()));
                seen.insert(name.clone(), (bounds.len(), cumulative.to_vec(), native));
            }
        });
    });
    let quarter = Some((3, vec![crate::BucketSpan { offset: -16, length: 1 }], vec![1]));
    assert_eq!(seen["rpc_seconds"], (0, vec![1], quarter.clone()));
    assert_eq!(seen["db_seconds"], (1, vec![1, 1], quarter));
    assert_eq!(seen["size_bytes"], (11, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], None));
}
