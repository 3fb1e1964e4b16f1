//! `/console/invitations/{link}`: where an invitation e-mail leads. `GET` shows a form — choose
//! a password for a new account, or give yours to join with an existing one; `POST` accepts
//! (see `moonengage_accounts::invitations::accept`). Server-rendered, no JavaScript, no cookie,
//! the console's strict CSP; a used, expired or unknown link says so.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use handlebars::html_escape;
use moonengage_accounts::invitations::{self, AcceptError, Lookup};
use moonengage_accounts::origin::Origin;
use moonengage_accounts::users::SetPasswordError;
use secrecy::SecretString;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The console's policy: no script, styles only from us, forms only to us, never framed.
const CONSOLE_CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Shows the form of a pending invitation, or what became of the link.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(link): Path<String>,
) -> Result<Response, ApiError> {
    let Some(secret) = well_formed(&link) else {
        return Ok(gone(&Lookup::Unknown));
    };
    Ok(match invitations::lookup(&state.pool, &secret).await? {
        Lookup::Pending {
            workspace,
            role,
            new_user,
        } => form(
            StatusCode::OK,
            &link,
            &workspace,
            &role.to_string(),
            new_user,
            None,
        ),
        other => gone(&other),
    })
}

/// The form's one field.
#[derive(Deserialize)]
pub(crate) struct Answer {
    password: String,
}

/// Accepts the invitation with the password given.
pub(crate) async fn accept(
    State(state): State<AppState>,
    Path(link): Path<String>,
    Form(answer): Form<Answer>,
) -> Result<Response, ApiError> {
    let Some(secret) = well_formed(&link) else {
        return Ok(gone(&Lookup::Unknown));
    };
    let lookup = invitations::lookup(&state.pool, &secret).await?;
    let Lookup::Pending {
        workspace,
        role,
        new_user,
    } = lookup
    else {
        return Ok(gone(&lookup));
    };
    let given = SecretString::from(answer.password);
    let problem = match invitations::accept(&state.pool, &secret, given, &Origin::default()).await {
        Ok(_) => {
            tracing::info!("invitation accepted");
            return Ok(page(
                StatusCode::OK,
                "Welcome",
                &format!(
                    "<p>You are now a member of {} as {role}. Log in to the console with your \
                     e-mail and password.</p>",
                    html_escape(&workspace)
                ),
            ));
        }
        Err(AcceptError::Password(SetPasswordError::Rejected(rule))) => {
            (StatusCode::UNPROCESSABLE_ENTITY, rule.to_string())
        }
        Err(AcceptError::WrongPassword) => (
            StatusCode::FORBIDDEN,
            AcceptError::WrongPassword.to_string(),
        ),
        Err(AcceptError::Invalid(_)) => {
            return Ok(gone(&invitations::lookup(&state.pool, &secret).await?));
        }
        Err(AcceptError::Password(SetPasswordError::Internal(e)) | AcceptError::Internal(e)) => {
            return Err(ApiError::Internal(e));
        }
    };
    Ok(form(
        problem.0,
        &link,
        &workspace,
        &role.to_string(),
        new_user,
        Some(&problem.1),
    ))
}

/// The link as a secret, if it has the shape of ours (so nothing else is reflected in a page).
fn well_formed(link: &str) -> Option<SecretString> {
    let body = link.strip_prefix(invitations::PREFIX)?;
    let ok = !body.is_empty()
        && body.len() <= 64
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| SecretString::from(link.to_owned()))
}

/// The form: a new password, or the existing account's.
fn form(
    status: StatusCode,
    link: &str,
    workspace: &str,
    role: &str,
    new_user: bool,
    problem: Option<&str>,
) -> Response {
    let (ask, autocomplete, button) = if new_user {
        (
            "Choose a password: at least 12 characters; a long passphrase is best.",
            "new-password",
            "Set password and join",
        )
    } else {
        (
            "You have a MoonEngage account already: give its password to join.",
            "current-password",
            "Join",
        )
    };
    let problem = problem.map_or_else(String::new, |p| {
        format!("<p role=\"alert\"><strong>{}</strong></p>", html_escape(p))
    });
    page(
        status,
        "Join a workspace",
        &format!(
            "<p>You are invited to {} as {role}.</p>{problem}\
             <form method=\"post\" action=\"/console/invitations/{link}\">\
             <p><label for=\"password\">{ask}</label><br>\
             <input id=\"password\" name=\"password\" type=\"password\" required \
             minlength=\"12\" maxlength=\"256\" autocomplete=\"{autocomplete}\"></p>\
             <p><button type=\"submit\">{button}</button></p></form>",
            html_escape(workspace)
        ),
    )
}

/// What a link that cannot be accepted says.
fn gone(lookup: &Lookup) -> Response {
    let (status, title, text) = match lookup {
        Lookup::Used => (
            StatusCode::GONE,
            "This invitation was used",
            "This link was used already: log in to the console with your e-mail and password.",
        ),
        Lookup::Expired => (
            StatusCode::GONE,
            "This invitation expired",
            "This link is no longer valid. Ask the workspace's owner or an admin to invite you \
             again.",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "This invitation link is unknown or was replaced by a newer e-mail: use the link of \
             the latest invitation you received.",
        ),
    };
    page(status, title, &format!("<p>{text}</p>"))
}

/// A complete page with the console's CSP; never cached (it carries a personal link).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} – MoonEngage</title></head><body><main><h1>{title}</h1>{body}</main>\
         </body></html>"
    );
    let mut response = (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    response
}
