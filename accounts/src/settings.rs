//! The `[accounts]` section: how long logins, tokens, links and activity last, and how many
//! wrong passwords are let through.

use serde::Deserialize;

/// Lifetimes and limits of account holders' access.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountsSettings {
    /// A personal API token's lifetime when its creator names none (days).
    pub token_days: i64,
    /// The longest lifetime a personal API token may be given (days).
    pub token_max_days: i64,
    /// A console session ends after this long without a request (minutes).
    pub session_idle_minutes: i64,
    /// A console session ends this long after login whatever happens (hours).
    pub session_absolute_hours: i64,
    /// How long an invitation or set-password link works (hours).
    pub invitation_hours: i64,
    /// How long a maintenance grant lasts when the owner names no duration (hours).
    pub maintenance_hours: i64,
    /// How often the scheduler leader looks for maintenance grants that ran out (seconds).
    pub maintenance_check_secs: u64,
    /// Wrong passwords allowed per account in `login_window_secs` before logins of that
    /// account are refused for the rest of the window.
    pub login_attempts_per_account: u32,
    /// Login attempts allowed per origin (/24 or /48) in `login_window_secs`.
    pub login_attempts_per_origin: u32,
    /// The window of the two login limits (seconds).
    pub login_window_secs: u64,
}
