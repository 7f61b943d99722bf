//! Neutron v2.0-compatible REST API and the northbound service that turns requests into store transactions.
//!
//! - [`NbService`] keeps the logical [`wyvern_model::Topology`] in memory in front of a
//!   [`wyvern_store::Store`], validates every write against it and commits the resulting
//!   changes in ordered, group-committed store transactions (see the `service` module docs
//!   for the consistency argument).
//! - [`router`] serves Neutron's v2.0 API over a service; [`Auth`] decides who the caller is.
//! - [`serve`] runs a router on a listener until a shutdown future resolves.

mod auth;
mod http;
mod query;
mod service;

use std::future::Future;

pub use auth::{
    Auth, AuthError, AuthFailure, KeystoneAuth, KeystoneConfig, KeystoneIdentity, TokenInfo,
    TokenTable, DEFAULT_KEYSTONE_TIMEOUT, DEFAULT_TOKEN_CACHE_CAPACITY, DEFAULT_TOKEN_CACHE_TTL,
};
pub use http::{router, HttpError};
pub use service::{ApiError, NbConfig, NbService, CONTEND_PREFIX, HEAD_KEY, RETRY_BUDGET};

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
/// Sets TCP_NODELAY on every connection: small JSON answers must not wait for Nagle.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "failed to set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
