//! What the code calls where things happen: sends, rate limits, Page pauses and halts,
//! webhooks, unsubscribes, data-subject requests. Each is one counter or histogram update.

use std::time::{Duration, Instant};

use super::families;

/// Delivery outcomes as `deliveries.status` records them; anything else is counted as `other`
/// so a typo cannot create unbounded series.
const SEND_OUTCOMES: &[&str] = &["sent", "retrying", "failed", "skipped", "unknown"];

/// Counts one send attempt's recorded outcome (`sent`, `retrying`, `failed`, `skipped`,
/// `unknown`) for a Page, by internal id.
pub fn send_outcome(page_id: i64, outcome: &str) {
    let outcome = SEND_OUTCOMES
        .iter()
        .find(|known| **known == outcome)
        .copied()
        .unwrap_or("other");
    families()
        .sends
        .with_label_values(&[page_id.to_string().as_str(), outcome])
        .inc();
}

/// Counts one Send API error of a Page by its class (`ErrorClass::as_str` of the Messenger
/// client), so error spikes show which kind they are.
pub fn send_error(page_id: i64, class: &'static str) {
    families()
        .send_errors
        .with_label_values(&[page_id.to_string().as_str(), class])
        .inc();
}

/// Records how long a send waited for its Page's rate limiter (zero waits too: the histogram's
/// count is then the number of permits taken).
pub fn rate_limiter_wait(page_id: i64, waited: Duration) {
    families()
        .limiter_wait
        .with_label_values(&[page_id.to_string().as_str()])
        .observe(waited.as_secs_f64());
}

/// Counts one send of a Page leaving at `at` (the rate limiter calls it as it releases a
/// sender), for the Page's busiest second.
pub fn page_send(page_id: i64, at: Instant) {
    families().busiest_second.record(page_id, at);
}

/// Counts a Page paused because Facebook rate-limited it.
pub fn page_paused(page_id: i64) {
    families()
        .page_pauses
        .with_label_values(&[page_id.to_string().as_str()])
        .inc();
}

/// Counts a Page halted by a fatal Page error; its campaigns stop until an admin acts.
pub fn page_halted(page_id: i64) {
    families()
        .page_halts
        .with_label_values(&[page_id.to_string().as_str()])
        .inc();
}

/// Counts one webhook event received; `kind` and `result` are fixed words (see
/// [`super::WEBHOOK_KINDS`] and [`super::WEBHOOK_RESULTS`]).
pub fn webhook_received(kind: &'static str, result: &'static str) {
    families().webhooks.with_label_values(&[kind, result]).inc();
}

/// Records how long a webhook delivery waited for its answer (HTTP `status`), by status class:
/// the ack latency Facebook sees.
pub fn webhook_acked(status: u16, took: Duration) {
    let class = match status {
        200..=299 => super::ACK_CLASSES[0],
        400..=499 => super::ACK_CLASSES[1],
        _ => super::ACK_CLASSES[2],
    };
    families()
        .webhook_ack
        .with_label_values(&[class])
        .observe(took.as_secs_f64());
}

/// Counts one webhook event skipped as malformed, by problem (see
/// [`super::WEBHOOK_PROBLEMS`]); its delivery is still accepted.
pub fn webhook_malformed(problem: &'static str) {
    families()
        .webhook_malformed
        .with_label_values(&[problem])
        .inc();
}

/// Counts one person opted in by a message, `new` or `returned` (see [`super::OPT_INS`]).
pub fn opted_in(how: &'static str) {
    families().opt_ins.with_label_values(&[how]).inc();
}

/// Counts one person unsubscribed, by channel (see [`super::UNSUBSCRIBE_CHANNELS`]).
pub fn unsubscribed(channel: &'static str) {
    families().unsubscribes.with_label_values(&[channel]).inc();
}

/// Counts one data-subject request received, by type (see [`super::DSR_TYPES`]): the person's
/// act is counted, never logged.
pub fn dsr_received(kind: &'static str) {
    families().dsr_received.with_label_values(&[kind]).inc();
}

/// Counts one export handed to the person it is about (its link works once).
pub fn export_downloaded() {
    families()
        .exports_downloaded
        .with_label_values(&[] as &[&str])
        .inc();
}

/// Counts one data-subject request carried out, by type (see [`super::DSR_TYPES`]).
pub fn dsr_completed(kind: &'static str) {
    families().dsr_completed.with_label_values(&[kind]).inc();
}
