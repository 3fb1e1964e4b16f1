//! The worker process: runs queued jobs until SIGTERM, then drains in-flight work.

use moonengage_core::settings::Settings;
use moonengage_ops::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(settings.app.is_production());
    let worker = moonengage_worker::Worker::build(settings).await?;
    worker.run_until_stopped().await
}
