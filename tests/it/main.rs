//! Integration tests of the whole system against real Postgres, real Redis, the real sandbox
//! over HTTP, and real processes where the behaviour under test is about processes.

mod account_mail;
mod api_fuzz;
mod browser;
mod cancellation;
mod chaos;
mod console;
mod delivery;
mod first_hits;
mod helpers;
mod ingest;
mod layout;
mod leader;
mod lifecycle;
mod log_scan;
mod maintenance;
mod metrics;
mod notifications;
mod policy_public;
mod privacy;
mod privacy_keys;
mod queue;
mod restarts;
mod spine;
mod tenancy;
mod web;
mod webhook_client;
