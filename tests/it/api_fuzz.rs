//! The admin API fuzzed against its own OpenAPI document with schemathesis (PyPI; `scripts/test`
//! installs it): generated valid and invalid calls of every operation, with a live operator's
//! token (an operator owns a workspace of their own, so both the workspace's routes and the
//! platform's are reached). Every check must hold: no 5xx, every status, content type, header
//! and body as documented, invalid input refused, valid input accepted, auth enforced
//! (`tests/it/schemathesis.toml` names the three rules JSON Schema cannot state).

use std::time::Duration;

use crate::helpers::{Harness, repo_root};

/// Examples per operation: enough to find what a schema does not say, in about a minute here.
const EXAMPLES: &str = "50";

#[tokio::test]
async fn the_api_answers_every_generated_call_as_its_document_says() {
    let mut h = Harness::new().await;
    let web = h.start_web().await;
    // Token ids far from the small numbers a fuzzer tries first, so `DELETE /api/v1/tokens/{id}`
    // does not revoke the token the run uses (logout is left out for the same reason).
    sqlx::query("ALTER TABLE api_tokens ALTER COLUMN id RESTART WITH 1000000007")
        .execute(h.pool())
        .await
        .unwrap();
    let token = h.operator_token().await;
    h.add_page("424242").await;
    let run = tokio::process::Command::new("schemathesis")
        .args([
            "--config-file",
            &repo_root()
                .join("tests/it/schemathesis.toml")
                .display()
                .to_string(),
            "run",
            &format!("{web}/api/v1/openapi.json"),
            "--checks",
            "all",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--max-examples",
            EXAMPLES,
            "--seed",
            "11",
            "--workers",
            "2",
            "--exclude-path",
            "/api/v1/logout",
            "--request-timeout",
            "20",
            // U+0000 is refused (422) wherever text is stored: Postgres text cannot hold it.
            "--generation-allow-x00",
            "false",
            "--generation-database",
            "none",
            "--no-color",
        ])
        // Its replay store goes to a scratch directory, not the repository.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finishes within 5 minutes")
        .expect("schemathesis is installed (scripts/test installs it: pip install schemathesis)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
