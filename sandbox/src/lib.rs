//! A real HTTP server that behaves like the Graph API Send, Profile and ID Matching endpoints, with an
//! in-memory record of what it received and a control API for failure injection.
//!
//! It exists so the demo, the integration tests (in-process or as a separate process) and the
//! benchmarks exercise the backend against Facebook's shapes, limits and failure modes without
//! touching Facebook.

mod control;
mod errors;
mod faults;
mod graph;
mod id_matching;
mod profile;
mod rate_limit;
mod records;
mod registration;
mod send;
mod state;

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use faults::{ErrorSpec, Faults, PsidFault, RandomFault};
pub use records::{MessageFilter, PageStats, QuickReply, ReceivedMessage, Stats};
pub use registration::{
    IdMappingRegistration, PageRegistration, PageScopedId, ProfileRegistration,
};
pub use state::SandboxState;

/// How to start a sandbox: where to listen and how the fake Graph API behaves at first.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Interface to bind (default `127.0.0.1`).
    pub host: String,
    /// Port to bind; 0 (the default) picks a free one, see [`Sandbox::port`].
    pub port: u16,
    /// Delay before every Send/Profile answer (default none).
    pub latency: Duration,
    /// Send API calls allowed per second per Page (default 300, as Facebook; 0 = unlimited).
    pub rate_limit_per_page: u32,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 0,
            latency: Duration::ZERO,
            rate_limit_per_page: 300,
        }
    }
}

/// A bound, not yet running sandbox: the port is known before it serves, so callers can point
/// the backend at it first.
pub struct Sandbox {
    listener: TcpListener,
    host: String,
    port: u16,
    state: SandboxState,
}

impl Sandbox {
    /// Binds the listener and creates the in-memory state.
    pub async fn build(settings: SandboxSettings) -> anyhow::Result<Sandbox> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .await
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        Ok(Sandbox {
            listener,
            host: settings.host,
            port,
            state: SandboxState::new(settings.latency, settings.rate_limit_per_page),
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to use as the Graph API base, e.g. `http://127.0.0.1:8088`.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// A handle to the state the control API manipulates, for in-process setup and inspection.
    pub fn state(&self) -> SandboxState {
        self.state.clone()
    }

    /// Serves until SIGTERM or ctrl-c; held answers (latency, timeout mode) are released at once
    /// so shutdown is not delayed by them.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = CancellationToken::new();
        let app = App {
            state: self.state,
            shutdown: shutdown.clone(),
        };
        let listener = self.listener.tap_io(|tcp| {
            // Small request/answer exchanges: do not let Nagle delay them.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async move {
                stop_signal().await;
                shutdown.cancel();
            })
            .await
            .context("serving the sandbox")
    }
}

/// What every handler gets: the state, and the signal that ends held answers at shutdown.
#[derive(Clone)]
pub(crate) struct App {
    state: SandboxState,
    shutdown: CancellationToken,
}

impl App {
    /// Waits `duration`, or less if the server is shutting down.
    async fn pause(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

impl FromRef<App> for SandboxState {
    fn from_ref(app: &App) -> Self {
        app.state.clone()
    }
}

fn router(app: App) -> Router {
    Router::new()
        .route("/{version}/{node}/messages", post(send::send_message))
        .route("/{version}/{node}", get(profile::lookup))
        .route(
            "/{version}/{node}/ids_for_pages",
            get(id_matching::ids_for_pages),
        )
        .merge(control::routes())
        .with_state(app)
}

async fn stop_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, rely on SIGTERM alone.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests;
