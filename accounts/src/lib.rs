//! The businesses that use MoonEngage, as account holders: workspaces that own Pages, users who
//! log in with a strong password, their role in each workspace, personal API tokens for those
//! who choose no cookies, and the security events each user can see about their own account.
//!
//! Every secret handed out (token, session id, invitation link) is random and stored only as a
//! SHA-256 hash ([`secret`]), so a database leak yields nothing that logs in. Everything here
//! takes a workspace id from an authenticated [`Principal`], never from what a request names.

pub mod activity;
pub mod alerts;
pub mod cancellation;
pub mod invitations;
pub mod login;
pub mod login_limit;
pub mod maintenance;
pub mod me;
pub mod members;
pub mod origin;
pub mod password;
mod principal;
mod role;
pub mod secret;
pub mod sessions;
mod settings;
pub mod tokens;
pub mod users;
pub mod workspaces;

pub use principal::{Forbidden, NotOperator, Principal, Via};
pub use role::Role;
pub use settings::AccountsSettings;
