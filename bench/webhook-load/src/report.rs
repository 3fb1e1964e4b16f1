//! The result line, in the `key=value` shape the other benches print.

use crate::load::{LoadArgs, Outcome};

/// `rate=R seconds=D sent=N ok=N errors=E events=N p50_ms p99_ms max_ms achieved_per_s
/// lag_p99_ms` (`events` stored by the successful deliveries; `lag` how late requests left the
/// generator, waiting for a free connection).
pub fn line(args: &LoadArgs, outcome: &Outcome) -> String {
    let seconds = outcome.elapsed.as_secs_f64();
    let achieved = if seconds > 0.0 {
        outcome.ok as f64 / seconds
    } else {
        0.0
    };
    format!(
        "rate={} seconds={} sent={} ok={} errors={} events={} p50_ms={:.2} p99_ms={:.2} \
         max_ms={:.2} achieved_per_s={:.0} lag_p99_ms={:.2}",
        args.rate,
        args.seconds,
        outcome.sent,
        outcome.ok,
        outcome.errors,
        outcome.ok * args.events_per_delivery as u64,
        quantile(&outcome.latencies, 0.50),
        quantile(&outcome.latencies, 0.99),
        quantile(&outcome.latencies, 1.0),
        achieved,
        quantile(&outcome.lags, 0.99),
    )
}

/// The `q` quantile of sorted microseconds, in milliseconds (nearest rank).
fn quantile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}
