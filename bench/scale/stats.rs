//! Pure statistics and formatting of the scale benchmark. Unit-tested by `tests/bench_stats.rs`, which
//! includes this file; keep it free of I/O and of the harness's other modules.

use std::time::Duration;

/// Percentiles of one series of latencies. `missing` counts samples that never finished within the
/// harness's timeout: they are not in the percentiles, and the table says how many there were.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub missing: usize,
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at least `q` of all samples
/// at or below it. `q` in (0, 1].
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarizes samples; `None` is a sample that timed out.
pub fn summarize(samples: &[Option<Duration>]) -> Summary {
    let mut done: Vec<Duration> = samples.iter().flatten().copied().collect();
    done.sort();
    Summary {
        n: samples.len(),
        missing: samples.len() - done.len(),
        p50: percentile(&done, 0.50),
        p95: percentile(&done, 0.95),
        p99: percentile(&done, 0.99),
        max: done.last().copied(),
    }
}

/// `12 ms`, `1.23 s`, `-` for none.
pub fn fmt_dur(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_secs(10) && d.as_millis() < 1000 => {
            format!("{} ms", d.as_millis())
        }
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
    }
}

/// How many times longer the baseline took than the operator's p99; a baseline that never ended
/// within `bound` is at least `bound`.
pub fn fmt_ratio(
    operator_p99: Option<Duration>,
    baseline: Option<Duration>,
    bound: Duration,
) -> String {
    let Some(op) = operator_p99.filter(|d| !d.is_zero()) else {
        return "-".into();
    };
    match baseline {
        Some(b) => format!("{:.0}x", b.as_secs_f64() / op.as_secs_f64()),
        None => format!(
            ">= {:.0}x (cut off at {} s)",
            bound.as_secs_f64() / op.as_secs_f64(),
            bound.as_secs()
        ),
    }
}

/// A Markdown table.
#[derive(Debug, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.headers);
        out.push_str(&line(
            &self
                .headers
                .iter()
                .map(|_| "---".to_string())
                .collect::<Vec<_>>(),
        ));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// The sum of the values of every sample of metric `name` (Prometheus text format) whose labels
/// contain every one of `labels` (e.g. `operation="list_instances"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        // An empty f64 sum is -0.0, which prints as "-0".
        .fold(0.0, |a, b| a + b)
}

/// A deterministic shuffle (xorshift64*), so runs pick the same pods without a `rand` dependency.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut s = seed.max(1);
    for i in (1..items.len()).rev() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        items.swap(i, (r % (i as u64 + 1)) as usize);
    }
}
