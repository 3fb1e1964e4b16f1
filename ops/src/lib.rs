//! What operators see and hear, shared by every process: Prometheus metrics and the `/metrics`
//! endpoint, structured logs, alert e-mails to admins (queued as jobs), and the shutdown signal.
//! It knows nothing of Messenger or of people: labels and alerts carry internal ids only.

pub mod alerts;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
