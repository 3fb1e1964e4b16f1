//! The scheduler process: one leader fans campaigns out and runs maintenance; others stand by.

use moonengage_core::settings::Settings;
use moonengage_ops::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(settings.app.is_production());
    let scheduler = moonengage_scheduler::Scheduler::build(settings).await?;
    scheduler.run_until_stopped().await
}
