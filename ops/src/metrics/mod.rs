//! Prometheus metrics (the `prometheus` crate, names `moonengage_*`): one process-wide registry,
//! typed functions the code calls where things happen, the database-derived gauges the
//! scheduler leader publishes, a tower layer timing every job, and the `/metrics` endpoint.
//!
//! Labels are internal ids (Page, campaign), queue names and fixed words only — never anything
//! about a person. Label words a call site passes are `&'static str` or checked against a known
//! set, so a runtime value can never become a label by accident.

mod busiest;
mod events;
mod families;
mod layer;
mod serve;

use std::sync::LazyLock;

use prometheus::{Encoder as _, GaugeVec, TextEncoder};

pub use events::{
    dsr_completed, dsr_received, export_downloaded, opted_in, page_halted, page_paused, page_send,
    rate_limiter_wait, send_error, send_outcome, unsubscribed, webhook_acked, webhook_malformed,
    webhook_received,
};
pub use layer::{JobMetrics, JobMetricsLayer};
pub use serve::{MetricsSettings, handler, start};

use families::Families;

/// Kinds of webhook event `webhook_received` is called with (`EventKind::as_str`, the
/// data-deletion callback, `other` for a body refused before it was read), so each has a
/// series at start.
pub const WEBHOOK_KINDS: &[&str] = &["message", "postback", "data_deletion", "other"];

/// Results of receiving a webhook: stored for a worker, a duplicate delivery, or refused (bad
/// signature or body).
pub const WEBHOOK_RESULTS: &[&str] = &["accepted", "duplicate", "rejected"];

/// Status classes of webhook answers (`moonengage_webhook_ack_seconds{status}`).
pub const ACK_CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// Why a webhook event was skipped while the rest of its delivery was stored (see
/// `webhook::Problem::as_str`).
pub const WEBHOOK_PROBLEMS: &[&str] = &[
    "not_page",
    "bad_entry",
    "bad_event",
    "missing_sender",
    "missing_timestamp",
    "bad_timestamp",
];

/// How a message opted a person in: new to the Page, or returning.
pub const OPT_INS: &[&str] = &["new", "returned"];

/// How a person unsubscribed: the quick reply or postback with our token, a stop keyword, the
/// `/u/TOKEN` link, the admin API.
pub const UNSUBSCRIBE_CHANNELS: &[&str] = &["quick_reply", "keyword", "link", "admin"];

/// Data-subject request types, as `dsr_requests.type` stores them.
pub const DSR_TYPES: &[&str] = &["export", "erasure", "objection"];

static FAMILIES: LazyLock<Families> = LazyLock::new(Families::new);

fn families() -> &'static Families {
    &FAMILIES
}

/// Marks this process up and publishes its build; call once at start with `web`, `worker` or
/// `scheduler` and every queue a dashboard shows (`moonengage_core::jobs::QUEUES`). Also
/// creates every series with a known label set at 0, so rates, ratios and alerts see "nothing
/// happened yet" instead of "no data".
pub fn init(process: &'static str, queues: &[&str]) {
    let f = families();
    f.up.with_label_values(&[process]).set(1.0);
    f.build_info
        .with_label_values(&[process, env!("CARGO_PKG_VERSION")])
        .set(1.0);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    f.start_time.with_label_values(&[process]).set(started);
    f.touch_known_series(queues);
}

/// The gauges computed from Postgres, which only the scheduler leader publishes (its
/// `gauges` service); every other family is set where things happen, through this module.
#[derive(Clone)]
pub struct DbGauges {
    /// Jobs by queue and state.
    pub queue_jobs: GaugeVec,
    /// Age of the oldest due job, by queue.
    pub queue_oldest_ready: GaugeVec,
    /// Workers with a recent heartbeat, by queue.
    pub workers_alive: GaugeVec,
    /// Workers running a job, by queue.
    pub workers_busy: GaugeVec,
    /// 1 on the scheduler that holds the leader lock.
    pub leader: GaugeVec,
    /// Each Page's configured send rate.
    pub page_rate_limit: GaugeVec,
    /// 1 for a paused Page.
    pub page_paused: GaugeVec,
    /// 1 for a Page Facebook refuses.
    pub page_halted: GaugeVec,
    /// Recipients of each campaign.
    pub campaign_recipients: GaugeVec,
    /// Messages sent of each campaign.
    pub campaign_sent: GaugeVec,
    /// 1 for a finished campaign.
    pub campaign_finished: GaugeVec,
    /// Open data-subject requests, by type.
    pub dsr_open: GaugeVec,
    /// Age of the oldest open request, by type.
    pub dsr_oldest_open: GaugeVec,
    /// Seconds left to report each open breach.
    pub incident_deadline: GaugeVec,
}

/// Handles on the database-derived gauges, for the scheduler leader to publish into.
pub fn db_gauges() -> DbGauges {
    let f = families();
    DbGauges {
        queue_jobs: f.queue_jobs.clone(),
        queue_oldest_ready: f.queue_oldest_ready.clone(),
        workers_alive: f.workers_alive.clone(),
        workers_busy: f.workers_busy.clone(),
        leader: f.leader.clone(),
        page_rate_limit: f.page_rate_limit.clone(),
        page_paused: f.page_paused.clone(),
        page_halted: f.page_halted.clone(),
        campaign_recipients: f.campaign_recipients.clone(),
        campaign_sent: f.campaign_sent.clone(),
        campaign_finished: f.campaign_finished.clone(),
        dsr_open: f.dsr_open.clone(),
        dsr_oldest_open: f.dsr_oldest_open.clone(),
        incident_deadline: f.incident_deadline.clone(),
    }
}

/// The registry in Prometheus's text format, for `/metrics`.
pub fn encode() -> Result<String, prometheus::Error> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&families().registry.gather(), &mut buffer)?;
    String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The name of every metric family this code exports, read from the registered descriptors
/// (not kept by hand), so tests can check that dashboards name only real metrics.
pub fn names() -> Vec<String> {
    families().names.clone()
}
