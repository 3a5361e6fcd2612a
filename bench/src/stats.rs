//! Latency histograms, per-row results and the table.

use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::Duration;

/// Latencies in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Record `d`, clamped into the histogram's range (a latency is never lost).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, h.high());
    h.record(us).expect("clamped into range");
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Messages the far end accepted (250 after the data).
    pub ok: u64,
    /// Messages refused or lost with their session.
    pub failed: u64,
    /// Message bytes accepted (as in the files, before dot-stuffing).
    pub bytes: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// The first few failure reasons, for the report.
    pub errors: Vec<String>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        })
    }
}

impl Measured {
    pub fn msgs_per_sec(&self) -> f64 {
        per_sec(self.ok as f64, self.elapsed)
    }

    pub fn mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.elapsed)
    }
}

fn per_sec(amount: f64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        amount / s
    } else {
        0.0
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub measured: Measured,
    /// sigstamp's peak RSS (VmHWM) in bytes, for rows that run sigstamp.
    pub peak_rss: Option<u64>,
    /// (stamped, processed) as sigstamp's metrics counted them.
    pub stamped: Option<(u64, u64)>,
}

/// `1234 µs` → `1.23 ms`; below a millisecond in µs.
pub fn fmt_latency(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 10_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

pub fn fmt_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// The table: one row per path; `ratio` is msgs/s over that of the nearest row above (or
/// itself) labelled "straight…", so a fixed-rate group compares with its own straight run.
pub fn table(rows: &[Row]) -> String {
    let mut base: Option<f64> = None;
    let header = [
        "path", "msgs", "failed", "msgs/s", "MB/s", "p50", "p99", "p99.9", "ratio", "peak RSS",
        "stamped",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let m = &r.measured;
        if r.label.starts_with("straight") {
            base = Some(m.msgs_per_sec()).filter(|v| *v > 0.0);
        }
        let p = Percentiles::of(&m.latency);
        let lat = |f: fn(&Percentiles) -> u64| p.as_ref().map_or("-".into(), |p| fmt_latency(f(p)));
        cells.push(vec![
            r.label.clone(),
            m.ok.to_string(),
            m.failed.to_string(),
            format!("{:.0}", m.msgs_per_sec()),
            format!("{:.1}", m.mb_per_sec()),
            lat(|p| p.p50),
            lat(|p| p.p99),
            lat(|p| p.p999),
            base.map_or("-".into(), |b| format!("{:.2}", m.msgs_per_sec() / b)),
            r.peak_rss.map_or("-".into(), fmt_mb),
            r.stamped.map_or("-".into(), |(s, of)| format!("{s}/{of}")),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // The path left-aligned, the figures right-aligned.
            if c == 0 {
                let _ = write!(line, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(line, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(ok: u64, secs: f64, latencies_us: impl IntoIterator<Item = u64>) -> Measured {
        let mut latency = new_histogram();
        for us in latencies_us {
            record(&mut latency, Duration::from_micros(us));
        }
        Measured {
            ok,
            failed: 0,
            bytes: ok * 40_000,
            elapsed: Duration::from_secs_f64(secs),
            latency,
            errors: Vec::new(),
        }
    }

    /// hdrhistogram with 3 significant digits: within 0.1 % of the exact value.
    fn near(got: u64, want: u64) -> bool {
        (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let m = measured(100_000, 1.0, 1..=100_000);
        let p = Percentiles::of(&m.latency).unwrap();
        assert!(near(p.p50, 50_000), "{p:?}");
        assert!(near(p.p99, 99_000), "{p:?}");
        assert!(near(p.p999, 99_900), "{p:?}");
    }

    #[test]
    fn percentiles_see_the_tail() {
        // 990 fast, 10 slow: p50 fast, p99.9 slow.
        let lat = std::iter::repeat_n(200, 990).chain(std::iter::repeat_n(50_000, 10));
        let p = Percentiles::of(&measured(1000, 1.0, lat).latency).unwrap();
        assert!(near(p.p50, 200), "{p:?}");
        assert!(near(p.p999, 50_000), "{p:?}");
    }

    #[test]
    fn empty_and_out_of_range_latencies() {
        assert_eq!(Percentiles::of(&new_histogram()), None);
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= 600_000_000);
    }

    #[test]
    fn rates() {
        let m = measured(3000, 2.0, [100]);
        assert_eq!(m.msgs_per_sec(), 1500.0);
        assert_eq!(m.mb_per_sec(), 60.0);
        assert_eq!(measured(5, 0.0, [1]).msgs_per_sec(), 0.0);
    }

    #[test]
    fn latency_units() {
        assert_eq!(fmt_latency(850), "850 µs");
        assert_eq!(fmt_latency(1234), "1.23 ms");
        assert_eq!(fmt_latency(45_600), "45.6 ms");
        assert_eq!(fmt_latency(2_500_000), "2.50 s");
        assert_eq!(fmt_mb(12 * 1024 * 1024 + 512 * 1024), "12.5 MB");
    }

    #[test]
    fn table_aligns_and_divides_by_the_straight_path() {
        let rows = vec![
            Row {
                label: "straight to sink".into(),
                measured: measured(4000, 1.0, [300]),
                peak_rss: None,
                stamped: None,
            },
            Row {
                label: "sigstamp relay".into(),
                measured: measured(2000, 1.0, [700]),
                peak_rss: Some(20 * 1024 * 1024),
                stamped: Some((2000, 2000)),
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("path "));
        assert!(lines[1].chars().all(|c| c == '-'));
        assert!(lines[2].starts_with("straight to sink"));
        assert!(lines[3].starts_with("sigstamp relay  "));
        // Right-aligned columns end in the same place.
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{t}");
        let cols: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cols[2..5], ["2000", "0", "2000"]);
        assert!(lines[3].contains("0.50"), "{t}");
        assert!(lines[2].contains("1.00"), "{t}");
        assert!(lines[3].contains("20.0 MB"), "{t}");
        assert!(lines[3].ends_with("2000/2000"), "{t}");
        assert!(lines[3].contains("700 µs"), "{t}");
    }

    #[test]
    fn table_without_a_straight_row_has_no_ratio() {
        let t = table(&[Row {
            label: "sigstamp relay".into(),
            measured: measured(10, 1.0, [5]),
            peak_rss: None,
            stamped: None,
        }]);
        let last = t.lines().last().unwrap();
        assert_eq!(last.split_whitespace().filter(|c| *c == "-").count(), 3);
    }
}
