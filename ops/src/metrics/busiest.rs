//! The busiest second of each Page's sends, as this worker released them: the number a burst
//! would show in, whatever caused it. A gauge computed when scraped from per-10 ms counts of
//! the last minute, so a burst between two scrapes is still seen, and a Page that stopped
//! sending falls back to 0 instead of showing an old burst forever.
//!
//! Why a gauge of the maximum rather than a histogram of per-second counts: a histogram
//! needs each second closed before it is observed (a background task per process), and the
//! one number an admin asks — "did a Page ever go over its rate?" — is the maximum.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::GaugeVec;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

/// Width of one count: the busiest second is exact to this.
const BUCKET: Duration = Duration::from_millis(10);

/// How far back the busiest second is looked for: longer than any scrape interval.
const WINDOW: Duration = Duration::from_secs(60);

/// The gauge and the counts behind it; clones share them.
#[derive(Clone)]
pub(super) struct BusiestSecond {
    gauge: GaugeVec,
    counts: Arc<Mutex<HashMap<i64, BTreeMap<u64, u32>>>>,
    epoch: Instant,
}

impl BusiestSecond {
    pub(super) fn new(gauge: GaugeVec) -> BusiestSecond {
        BusiestSecond {
            gauge,
            counts: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// Counts one send of a Page at `at` (a slot may lie a little ahead).
    pub(super) fn record(&self, page_id: i64, at: Instant) {
        let bucket = self.bucket(at);
        if let Ok(mut counts) = self.counts.lock() {
            let page = counts.entry(page_id).or_default();
            *page.entry(bucket).or_default() += 1;
            let oldest = self.bucket(Instant::now()).saturating_sub(buckets(WINDOW));
            if page.first_key_value().is_some_and(|(b, _)| *b < oldest) {
                *page = page.split_off(&oldest);
            }
        }
    }

    fn bucket(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos() / BUCKET.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sets each Page's gauge to its busiest second of the last minute.
    fn refresh(&self) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let oldest = self.bucket(Instant::now()).saturating_sub(buckets(WINDOW));
        for (page_id, page) in counts.iter_mut() {
            *page = page.split_off(&oldest);
            self.gauge
                .with_label_values(&[page_id.to_string().as_str()])
                .set(f64::from(busiest(page, buckets(Duration::from_secs(1)))));
        }
    }
}

fn buckets(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos() / BUCKET.as_nanos()).unwrap_or(u64::MAX)
}

/// The most sends in any `width` consecutive buckets.
fn busiest(counts: &BTreeMap<u64, u32>, width: u64) -> u32 {
    let entries: Vec<(u64, u32)> = counts.iter().map(|(b, c)| (*b, *c)).collect();
    let (mut best, mut sum, mut first) = (0, 0, 0);
    for &(bucket, count) in &entries {
        sum += count;
        while entries[first].0 + width <= bucket {
            sum -= entries[first].1;
            first += 1;
        }
        best = best.max(sum);
    }
    best
}

impl Collector for BusiestSecond {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_second_counts_any_hundred_consecutive_buckets() {
        let counts: BTreeMap<u64, u32> = [(0, 5), (50, 5), (99, 5), (100, 1), (149, 10)].into();
        assert_eq!(busiest(&counts, 100), 21, "buckets 50..150");
        assert_eq!(busiest(&BTreeMap::new(), 100), 0);
    }

    #[test]
    fn sends_older_than_the_window_no_longer_count() {
        let gauge = GaugeVec::new(prometheus::Opts::new("t", "t"), &["page"]).unwrap();
        let busiest = BusiestSecond::new(gauge.clone());
        let now = Instant::now();
        for i in 0..30 {
            busiest.record(7, now + Duration::from_millis(i * 20));
        }
        busiest.refresh();
        assert_eq!(gauge.with_label_values(&["7"]).get(), 30.0);
        busiest.counts.lock().unwrap().insert(7, [(0, 3)].into());
        let late = BusiestSecond {
            epoch: now - WINDOW * 2,
            ..busiest
        };
        late.refresh();
        assert_eq!(gauge.with_label_values(&["7"]).get(), 0.0);
    }
}
