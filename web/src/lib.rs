//! The web process (axum). It never does slow work inline: it verifies, writes, answers.

use std::future::Future;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use moonengage_core::settings::Settings;
use moonengage_core::{db, shutdown};
use sqlx::PgPool;
use tokio::net::TcpListener;

/// A bound web server, ready to run; tests read its port before starting it.
pub struct App {
    listener: TcpListener,
    router: Router,
}

impl App {
    /// Binds the listener (port 0 picks a free one) and builds the routes.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let pool = db::connect(&settings.database)?;
        let address = format!("{}:{}", settings.web.host, settings.web.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding web.host:web.port ({address})"))?;
        Ok(App {
            listener,
            router: routes(pool),
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until SIGTERM or Ctrl-C, finishing requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(async {
            let _ = shutdown::signal().await;
        })
        .await
    }

    /// Serves until `stop` resolves, finishing requests in flight.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "web listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stop)
            .await
            .context("serving HTTP")
    }
}

fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(pool)
}

/// Liveness and database reachability, for load balancers and the demo.
async fn healthz(
    axum::extract::State(pool): axum::extract::State<PgPool>,
) -> axum::http::StatusCode {
    match sqlx::query("SELECT 1").execute(&pool).await {
        Ok(_) => axum::http::StatusCode::OK,
        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    }
}
