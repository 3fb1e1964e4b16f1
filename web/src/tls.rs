//! TLS termination with rustls, for deployments without a proxy in front.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;

/// Requests in flight get this long to finish once a stop is asked for.
const GRACE: Duration = Duration::from_secs(30);

/// Reads the configured PEM certificate chain and key; fails naming the setting.
pub(crate) async fn load(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "reading web.tls_cert_path ({}) and web.tls_key_path ({})",
                cert.display(),
                key.display()
            )
        })
}

/// Serves HTTPS on `listener` until `stop` resolves, then finishes requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    config: RustlsConfig,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        stop.await;
        stopper.graceful_shutdown(Some(GRACE));
    });
    let listener = listener.into_std().context("preparing the TLS listener")?;
    axum_server::from_tcp_rustls(listener, config)
        .context("starting TLS")?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
        .context("serving HTTPS")
}
