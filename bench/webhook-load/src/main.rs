//! `webhook-load`: an open-loop load generator for `POST /webhooks/messenger`, so the web
//! process's ingest is measured the way Facebook loads it: deliveries arrive on Facebook's
//! schedule, not when we are ready. Deliveries are signed and Meta-shaped, generated before the
//! clock starts; each request's latency counts from the time it was *scheduled* to be sent, so
//! a slow server is not hidden by a generator that waits for it (no coordinated omission).
//!
//! `webhook-load --rate R --seconds D` prints
//! `rate=R seconds=D sent=N ok=N errors=E p50_ms p99_ms max_ms achieved_per_s` (plus the
//! events stored and how late requests left the generator). `--rate 0` sends back to back on
//! every connection: the generator's own capacity, against `webhook-load echo` or a 404 path.

mod deliveries;
mod echo;
mod load;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "webhook-load",
    about = "Open-loop load of signed Messenger webhook deliveries"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: load::LoadArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Answer every request with 200 and an empty JSON object: a trivial endpoint to measure the
    /// generator's own capacity against.
    Echo {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 18099)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::Echo { port }) => runtime.block_on(echo::serve(port)),
        None => {
            let deliveries = deliveries::generate(&cli.load.deliveries())?;
            let outcome = runtime.block_on(load::run(&cli.load, deliveries))?;
            println!("{}", report::line(&cli.load, &outcome));
            Ok(())
        }
    }
}
