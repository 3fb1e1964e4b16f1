//! Where a request came from, as coarsely as account activity keeps it: the connection's peer
//! (or, behind a proxy trusted by `web.trust_forwarded_for`, the last `X-Forwarded-For` entry,
//! the one that proxy appended) cut to its network, and the browser family. The address itself
//! goes no further than [`Origin::of`]: it is never logged nor stored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use moonengage_accounts::origin::Origin;

use crate::state::AppState;

/// The coarse origin of the request.
pub(crate) struct ClientOrigin(pub Origin);

impl FromRequestParts<AppState> for ClientOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ClientOrigin, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let forwarded = state
            .settings
            .web
            .trust_forwarded_for
            .then(|| last_forwarded(parts))
            .flatten();
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok());
        Ok(ClientOrigin(Origin::of(forwarded.or(peer), user_agent)))
    }
}

/// The last address of the last `X-Forwarded-For` header: what the trusted proxy appended.
fn last_forwarded(parts: &Parts) -> Option<IpAddr> {
    let value = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?;
    value.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}
