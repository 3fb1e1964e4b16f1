//! The web process: webhooks, unsubscribe pages, the admin API, `/metrics`.

use moonengage_core::settings::Settings;
use moonengage_ops::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(settings.app.is_production());
    let app = moonengage_web::App::build(settings).await?;
    app.run_until_stopped().await
}
