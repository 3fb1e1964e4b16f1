//! `/metrics` over HTTP: the handler web mounts on its own router, and the small listener
//! worker and scheduler run beside their work.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::settings::MetricsSettings;

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
