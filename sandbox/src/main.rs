//! The sandbox as its own process, for the demo, process-level tests and benchmarks.

use std::time::Duration;

use clap::Parser;
use moonengage_sandbox::{Sandbox, SandboxSettings};

/// A fake Graph API (Send and Profile endpoints) with a control API under /_sandbox/.
#[derive(Parser)]
#[command(name = "sandbox")]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8088)]
    port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Delay before every Send/Profile answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Send API calls allowed per second per Page (0 = unlimited).
    #[arg(long, default_value_t = 300)]
    rate_limit: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sandbox = Sandbox::build(SandboxSettings {
        host: args.host,
        port: args.port,
        latency: Duration::from_millis(args.latency_ms),
        rate_limit_per_page: args.rate_limit,
    })
    .await?;
    println!("sandbox listening on {}", sandbox.base_url());
    sandbox.run_until_stopped().await
}
