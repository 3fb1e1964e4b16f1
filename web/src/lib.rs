//! The web process (axum). It never does slow work inline: it verifies, writes, answers.

mod api;
mod client;
mod console;
mod error;
mod exports;
mod facebook;
mod hardening;
mod invitation_page;
mod privacy_page;
mod state;
mod tls;
mod unsubscribe;
mod webhooks;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use moonengage_accounts::login_limit::LoginLimiter;
use moonengage_core::settings::Settings;
use moonengage_core::webhook::GroupWriter;
use moonengage_core::{db, jobs};
use moonengage_ops::metrics;
use moonengage_ops::shutdown;
use moonengage_privacy::crypto::Keyring;
use moonengage_privacy::unsubscribe::UnsubscribeSigner;
use moonengage_queue::wake::Nudges;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use crate::state::AppState;

/// A bound web server, ready to run; tests read its port before starting it.
pub struct App {
    listener: TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
}

impl App {
    /// Loads the keys, reads the TLS files when configured, binds the listener (port 0 picks a
    /// free one) and builds the routes.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let pool = db::connect(&settings.database)?;
        metrics::init("web", jobs::QUEUES);
        let keyring = Keyring::load_or_create(&pool, &settings.crypto)
            .await
            .context("loading the data keys")?;
        let signer = Arc::new(UnsubscribeSigner::new(&settings.unsubscribe)?);
        let tls = match settings.web.tls() {
            Some((cert, key)) => Some(tls::load(cert, key).await?),
            None => None,
        };
        let address = format!("{}:{}", settings.web.host, settings.web.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding web.host:web.port ({address})"))?;
        let login_limiter = Arc::new(LoginLimiter::new(
            &settings.redis,
            &settings.accounts,
            &settings.crypto.blind_index_key,
        )?);
        let state = AppState {
            login_limiter,
            nudges: Nudges::start(pool.clone()),
            webhook_writer: GroupWriter::start(pool.clone()),
            pool,
            keyring,
            signer,
            settings: Arc::new(settings),
        };
        Ok(App {
            listener,
            router: routes(state, tls.is_some()),
            tls,
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
        tracing::info!(
            port = self.port(),
            tls = self.tls.is_some(),
            "web listening"
        );
        match self.tls {
            Some(config) => tls::serve(self.listener, config, self.router, stop).await,
            None => axum::serve(
                self.listener,
                self.router
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await
            .context("serving HTTP"),
        }
    }
}

fn routes(state: AppState, tls: bool) -> Router {
    let web = &state.settings.web;
    let policy = Arc::new(hardening::Policy {
        tls,
        require_https: web.require_https,
        public_base_url: state.settings.configured_public_base_url(),
    });
    let timeout = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(hardening::timed_out))
        .timeout(web.request_timeout());
    let webhooks = Router::new()
        .route(
            "/webhooks/messenger",
            get(webhooks::verify).post(webhooks::receive.layer(from_fn(webhooks::timed))),
        )
        .route("/facebook/data-deletion", post(facebook::data_deletion))
        .layer(DefaultBodyLimit::max(web.max_body_bytes));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::handler))
        .route(
            "/u/{token}",
            get(unsubscribe::show).post(unsubscribe::confirm),
        )
        .route(
            "/console/invitations/{link}",
            get(invitation_page::show).post(invitation_page::accept),
        )
        .route("/deletion-status", get(facebook::status))
        .route("/privacy", get(privacy_page::current))
        .route("/privacy/versions/{id}", get(privacy_page::version))
        .route(
            "/exports/{token}",
            get(exports::show).post(exports::download),
        )
        .merge(webhooks)
        .merge(api::router(&state))
        .merge(console::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(from_fn(hardening::run_to_completion))
        .layer(timeout)
        .layer(from_fn_with_state(policy, hardening::secure))
        .with_state(state)
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
