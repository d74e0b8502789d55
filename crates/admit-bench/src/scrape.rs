//! admit's own view of a run, read from `GET /metrics` the way Prometheus
//! would: the backlog gauges sampled while the run lasts, and quantiles
//! estimated from the histogram buckets as `histogram_quantile` does. Only
//! the lines the benchmark reads are parsed.

use std::time::Duration;

/// The text of one scrape. `/metrics` takes no token: Prometheus scrapes it
/// from inside the network.
pub async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    Ok(client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The value of a series without labels, e.g. `admit_inbox_backlog`.
pub fn value(text: &str, name: &str) -> Option<f64> {
    samples(text)
        .find(|(series, _)| *series == name)
        .map(|(_, v)| v)
}

/// A histogram's cumulative buckets, `(le, count)` in the order written
/// (Prometheus writes them ascending, `+Inf` last).
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    samples(text)
        .filter_map(|(series, count)| {
            let le = series.strip_prefix(prefix.as_str())?.strip_suffix("\"}")?;
            Some((le.parse::<f64>().ok()?, count))
        })
        .collect()
}

/// The `q` quantile (0–1) as `histogram_quantile` estimates it: linear
/// within the bucket the rank falls in, the lower bound of the `+Inf`
/// bucket when it falls there. `None` when nothing was observed.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let share = if count > below {
                (rank - below) / (count - below)
            } else {
                1.0
            };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// `(series with labels, value)` of each sample line.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.parse::<f64>().ok()?))
        })
}

/// The highest backlog gauges seen while sampling.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peak {
    pub backlog: f64,
    pub oldest_unprocessed_age: f64,
    pub scrapes: usize,
    pub failed: usize,
}

/// Scrapes every `every` until `stop` resolves; returns the peaks.
pub async fn watch_backlog(
    url: String,
    every: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<Peak> {
    let client = crate::load::client(1)?;
    let mut tick = tokio::time::interval(every);
    // A slow scrape under load delays the next one rather than bunching them.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = Peak::default();
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(peak),
            _ = tick.tick() => {}
        }
        let Ok(text) = scrape(&client, &url).await else {
            peak.failed += 1;
            continue;
        };
        peak.scrapes += 1;
        if let Some(backlog) = value(&text, "admit_inbox_backlog") {
            peak.backlog = peak.backlog.max(backlog);
        }
        if let Some(age) = value(&text, "admit_inbox_oldest_unprocessed_age_seconds") {
            peak.oldest_unprocessed_age = peak.oldest_unprocessed_age.max(age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP admit_inbox_backlog Events stored and waiting to be processed.
# TYPE admit_inbox_backlog gauge
admit_inbox_backlog 17
# TYPE admit_event_processing_lag_seconds histogram
admit_event_processing_lag_seconds_sum 12.0
admit_event_processing_lag_seconds_count 100
admit_event_processing_lag_seconds_bucket{le=\"0.01\"} 90
admit_event_processing_lag_seconds_bucket{le=\"0.02\"} 90
admit_event_processing_lag_seconds_bucket{le=\"1.28\"} 98
admit_event_processing_lag_seconds_bucket{le=\"+Inf\"} 100
# EOF
";

    #[test]
    fn reads_a_gauge_and_not_a_longer_name_that_starts_with_it() {
        assert_eq!(value(TEXT, "admit_inbox_backlog"), Some(17.0));
        assert_eq!(value(TEXT, "admit_inbox"), None);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_like_histogram_quantile() {
        let b = buckets(TEXT, "admit_event_processing_lag_seconds");
        assert_eq!(b.len(), 4);
        assert_eq!(b[3], (f64::INFINITY, 100.0));
        // Rank 50 of 90 in [0, 0.01].
        let p50 = quantile(&b, 0.5).expect("observed");
        assert!((p50 - 0.01 * 50.0 / 90.0).abs() < 1e-12);
        // Rank 95: 5 of the 8 in (0.02, 1.28].
        let p95 = quantile(&b, 0.95).expect("observed");
        assert!((p95 - (0.02 + 1.26 * 5.0 / 8.0)).abs() < 1e-12);
        // In the +Inf bucket: its lower bound.
        assert_eq!(quantile(&b, 0.99), Some(1.28));
        assert_eq!(quantile(&[(0.01, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }
}
