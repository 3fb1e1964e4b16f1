//! Prometheus metrics (the `prometheus` crate, names `moonengage_*`): one process-wide registry,
//! typed functions the code calls where things happen, the database-derived gauges the
//! scheduler leader publishes, a tower layer timing every job, and the `/metrics` endpoint.
//!
//! Labels are internal ids (Page, campaign), queue names and fixed words only — never anything
//! about a person. Label words a call site passes are `&'static str` or checked against a known
//! set, so a runtime value can never become a label by accident.

mod busiest;
mod database;
mod events;
mod families;
mod layer;
mod serve;

use std::sync::LazyLock;

use prometheus::{Encoder as _, TextEncoder};

pub use database::DbCollector;
pub use events::{
    dsr_completed, dsr_received, export_downloaded, opted_in, page_halted, page_paused, page_send,
    rate_limiter_wait, send_error, send_outcome, unsubscribed, webhook_acked, webhook_malformed,
    webhook_received,
};
pub use layer::{JobMetrics, JobMetricsLayer};
pub use serve::{handler, start};

use crate::incidents::IncidentNoticeJob;
use crate::jobs::{DsrJob, NotifyJob, RotateJob};
use crate::notify::AdminEvent;
use crate::policy::PolicyNoticeJob;
use crate::privacy::export_link::ExportLinkJob;
use crate::profile::ProfileJob;
use families::Families;
use moonengage_queue::{Job, sends};

/// Every queue a dashboard shows, so each has series (at 0) before its first job.
pub const QUEUES: &[&str] = &[
    sends::KIND,
    moonengage_queue::events::KIND,
    DsrJob::KIND,
    NotifyJob::KIND,
    AdminEvent::KIND,
    PolicyNoticeJob::KIND,
    ProfileJob::KIND,
    ExportLinkJob::KIND,
    IncidentNoticeJob::KIND,
    RotateJob::KIND,
];

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
/// `scheduler`. Also creates every series with a known label set at 0, so rates, ratios and
/// alerts see "nothing happened yet" instead of "no data".
pub fn init(process: &'static str) {
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
    f.touch_known_series();
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
