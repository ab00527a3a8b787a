//! The scale benchmark's pure statistics (bench/scale/stats.rs): the figures in BENCHMARKS.md come
//! from these functions, so they are checked here, without a testbed.

#[path = "../bench/scale/stats.rs"]
mod stats;

use std::time::Duration;

use stats::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn nearest_rank_percentiles() {
    let sorted: Vec<Duration> = (1..=100).map(ms).collect();
    assert_eq!(percentile(&sorted, 0.50), Some(ms(50)));
    assert_eq!(percentile(&sorted, 0.95), Some(ms(95)));
    assert_eq!(percentile(&sorted, 0.99), Some(ms(99)));
    assert_eq!(percentile(&sorted, 1.0), Some(ms(100)));
    assert_eq!(percentile(&[ms(7)], 0.99), Some(ms(7)));
    assert_eq!(percentile(&[], 0.5), None);
    // 10 samples: p99 is the largest, p50 the fifth.
    let ten: Vec<Duration> = (1..=10).map(ms).collect();
    assert_eq!(percentile(&ten, 0.99), Some(ms(10)));
    assert_eq!(percentile(&ten, 0.5), Some(ms(5)));
}

#[test]
fn summaries_sort_and_count_timeouts_apart() {
    let s = summarize(&[Some(ms(30)), None, Some(ms(10)), Some(ms(20))]);
    assert_eq!(s.n, 4);
    assert_eq!(s.missing, 1);
    assert_eq!(s.p50, Some(ms(20)));
    assert_eq!(s.max, Some(ms(30)));
    let empty = summarize(&[None]);
    assert_eq!((empty.p99, empty.missing), (None, 1));
}

#[test]
fn durations_and_ratios_print_as_in_the_report() {
    assert_eq!(fmt_dur(Some(ms(123))), "123 ms");
    assert_eq!(fmt_dur(Some(ms(1234))), "1.23 s");
    assert_eq!(fmt_dur(None), "-");
    assert_eq!(
        fmt_ratio(
            Some(ms(250)),
            Some(Duration::from_secs(30)),
            Duration::from_secs(120)
        ),
        "120x"
    );
    assert_eq!(
        fmt_ratio(Some(ms(250)), None, Duration::from_secs(120)),
        ">= 480x (cut off at 120 s)"
    );
    assert_eq!(fmt_ratio(None, Some(ms(1)), Duration::from_secs(1)), "-");
}

#[test]
fn metric_sums_filter_by_name_and_labels() {
    let text = "# TYPE x counter\n\
        nacos_reconciler_nacos_request_duration_seconds_count{operation=\"list_instances\"} 12\n\
        nacos_reconciler_nacos_request_duration_seconds_count{operation=\"deregister\"} 3\n\
        nacos_reconciler_nacos_request_duration_seconds_sum{operation=\"deregister\"} 0.5\n\
        nacos_reconciler_reconcile_duration_seconds_count{binding=\"bench/bench\"} 4\n";
    let c = "nacos_reconciler_nacos_request_duration_seconds_count";
    assert_eq!(metric_sum(text, c, &[]), 15.0);
    assert_eq!(metric_sum(text, c, &["operation=\"deregister\""]), 3.0);
    assert_eq!(
        metric_sum(
            text,
            "nacos_reconciler_reconcile_duration_seconds_count",
            &[]
        ),
        4.0
    );
    assert_eq!(metric_sum(text, "absent", &[]), 0.0);
}

#[test]
fn tables_render_as_markdown() {
    let mut t = Table::new(&["a", "b"]);
    t.row(vec!["1".into(), "2".into()]);
    assert_eq!(t.render(), "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
}

#[test]
fn the_shuffle_is_a_deterministic_permutation() {
    let mut a: Vec<u32> = (0..1000).collect();
    let mut b = a.clone();
    shuffle(&mut a, 42);
    shuffle(&mut b, 42);
    assert_eq!(a, b);
    assert_ne!(a, (0..1000).collect::<Vec<_>>());
    a.sort();
    assert_eq!(a, (0..1000).collect::<Vec<_>>());
}
