//! Logging: JSON in production, readable elsewhere. Logs carry internal ids only, never a PSID,
//! a name, message text, a token or an IP address.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once per process; `RUST_LOG` overrides the default level.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
