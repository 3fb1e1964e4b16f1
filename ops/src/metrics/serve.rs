//! `/metrics` over HTTP: the handler web mounts on its own router, and the small listener
//! worker and scheduler run beside their work.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;

/// The `/metrics` listener of worker and scheduler (web serves `/metrics` on its own port). A
/// Procfile runner gives every process its own `PORT`, which is used here; without one, `port`
/// applies, and 0 (the default) serves nothing, since N workers on one machine cannot share a
/// fixed port.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// Interface to bind.
    pub host: String,
    /// Port to bind; 0 means no listener.
    pub port: u16,
    /// How often the scheduler leader recomputes the gauges read from Postgres (queue depth,
    /// oldest job, campaign progress, open data-subject requests): each is a few aggregate
    /// queries, cheap but not free on a large queue.
    pub refresh_ms: u64,
}

/// Answers a scrape with the registry in Prometheus's text format.
pub async fn handler() -> Response {
    match super::encode() {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(error) => {
            tracing::warn!(%error, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves `/metrics` on `metrics.host:metrics.port` in the background until the process exits
/// (so a draining worker is still observable). Port 0 serves nothing. A port that cannot be
/// bound is logged, not fatal: metrics never stop deliveries, and Prometheus shows the target
/// down.
pub async fn start(settings: &MetricsSettings) {
    if settings.port == 0 {
        tracing::info!("metrics.port is 0 and PORT is unset: not serving /metrics");
        return;
    }
    let address = format!("{}:{}", settings.host, settings.port);
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%address, %error, "cannot bind metrics.host:metrics.port");
            return;
        }
    };
    tracing::info!(%address, "serving /metrics");
    let router = Router::new().route("/metrics", get(handler));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "metrics listener stopped");
        }
    });
}
