//! Sending signed webhooks: closed loop (c workers, each sends its next
//! event when the last one was answered) and open loop (a fixed rate,
//! whatever the answers take), with every latency kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub sent: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Milliseconds, sorted.
    pub latencies: Vec<f64>,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    fn merge(parts: Vec<Sample>, elapsed: Duration) -> Sample {
        let mut all = Sample {
            elapsed,
            ..Sample::default()
        };
        for part in parts {
            all.sent += part.sent;
            all.failed += part.failed;
            all.latencies.extend(part.latencies);
        }
        all.latencies.sort_by(f64::total_cmp);
        all
    }
}

pub fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Posts one body signed now; `true` on a 2xx.
pub async fn post(client: &reqwest::Client, url: &str, secret: &str, body: &[u8]) -> bool {
    let now = admit::Clock::now(&admit::SystemClock);
    let header = admit_stripe::signature::sign(body, secret, now);
    match client
        .post(format!("{url}/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// Sends `bodies` with `concurrency` workers, stopping early at `limit`;
/// the `i`th body goes to `urls[i % urls.len()]` (round robin over the
/// instances of one admit, as a load balancer would spread them).
pub async fn closed_loop(
    urls: &[impl AsRef<str>],
    secret: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    limit: Duration,
) -> anyhow::Result<Sample> {
    anyhow::ensure!(!urls.is_empty(), "closed_loop needs at least one URL");
    let urls: Arc<Vec<String>> = Arc::new(urls.iter().map(|u| u.as_ref().to_owned()).collect());
    let client = client(concurrency)?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, bodies) = (client.clone(), next.clone(), bodies.clone());
        let (urls, secret) = (urls.clone(), secret.to_owned());
        workers.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || start.elapsed() > limit {
                    return sample;
                }
                let url = &urls[i % urls.len()];
                let sent = Instant::now();
                if post(&client, url, &secret, &bodies[i]).await {
                    sample.sent += 1;
                    sample.latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                } else {
                    sample.failed += 1;
                }
            }
        }));
    }
    let mut parts = Vec::new();
    for worker in workers {
        parts.push(worker.await?);
    }
    Ok(Sample::merge(parts, start.elapsed()))
}

/// Sends `bodies` at `rate` per second for at most `limit`.
pub async fn open_loop(
    url: &str,
    secret: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    rate: f64,
    limit: Duration,
) -> anyhow::Result<Sample> {
    let client = client(64)?;
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut tasks = Vec::new();
    for i in 0..bodies.len() {
        let due = start + gap * u32::try_from(i).unwrap_or(u32::MAX);
        if due.duration_since(start) > limit {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (client, bodies) = (client.clone(), bodies.clone());
        let (url, secret) = (url.to_owned(), secret.to_owned());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = post(&client, &url, &secret, &bodies[i]).await;
            (ok, sent.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut sample = Sample::default();
    for task in tasks {
        let (ok, ms) = task.await?;
        if ok {
            sample.sent += 1;
            sample.latencies.push(ms);
        } else {
            sample.failed += 1;
        }
    }
    sample.elapsed = start.elapsed();
    sample.latencies.sort_by(f64::total_cmp);
    Ok(sample)
}
