//! How many event streams (SSE) may be open at once: in all, and per client address, so one
//! client (or a flood of them) cannot hold every connection the server has. A stream holds a
//! [`StreamPermit`] for as long as it is open; past a limit the request gets 429 with Retry-After.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, StatusCode};

use super::ApiError;

/// Event streams open at once, all clients together.
pub const MAX_STREAMS: usize = 1024;
/// Event streams open at once from one client address (a UI tab uses a few).
pub const MAX_STREAMS_PER_CLIENT: usize = 64;
/// Seconds a refused client is asked to wait.
const RETRY_AFTER_S: u64 = 5;

#[derive(Default)]
pub struct StreamLimits {
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// `None`: a request without a peer address (served in-process, as tests do).
    per_client: HashMap<Option<IpAddr>, usize>,
}

/// One open stream; dropping it frees its place.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    client: Option<IpAddr>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

impl StreamLimits {
    /// A place for one more stream from the request's client, or 429 naming the limit.
    pub fn admit(self: &Arc<Self>, extensions: &Extensions) -> Result<StreamPermit, ApiError> {
        let client = extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = open.per_client.get(&client).copied().unwrap_or(0);
        let refusal = if mine >= MAX_STREAMS_PER_CLIENT {
            Some(format!("{mine} event streams are open from this address, the most one client may have; close some"))
        } else if open.total >= MAX_STREAMS {
            Some(format!("{} event streams are open, the most the server keeps; try again shortly", open.total))
        } else {
            None
        };
        if let Some(message) = refusal {
            tracing::warn!(?client, open = open.total, "event stream refused");
            return Err(ApiError { retry_after_s: Some(RETRY_AFTER_S), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message) });
        }
        open.total += 1;
        *open.per_client.entry(client).or_default() += 1;
        Ok(StreamPermit { limits: self.clone(), client })
    }

    /// Streams open now (for `/metrics`).
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_share_is_refused_and_a_closed_stream_frees_its_place() {
        let limits = Arc::new(StreamLimits::default());
        let mut ext = Extensions::new();
        ext.insert(ConnectInfo(std::net::SocketAddr::from(([10, 0, 0, 1], 5000))));
        let mut held: Vec<StreamPermit> = (0..MAX_STREAMS_PER_CLIENT).map(|_| limits.admit(&ext).unwrap()).collect();
        let refused = limits.admit(&ext).err().unwrap();
        assert_eq!((refused.status, refused.retry_after_s), (StatusCode::TOO_MANY_REQUESTS, Some(RETRY_AFTER_S)));
        // Another address still gets in.
        let mut other = Extensions::new();
        other.insert(ConnectInfo(std::net::SocketAddr::from(([10, 0, 0, 2], 5000))));
        let _theirs = limits.admit(&other).unwrap();
        held.pop();
        let _again = limits.admit(&ext).unwrap();
        assert_eq!(limits.open(), MAX_STREAMS_PER_CLIENT + 1);
    }
}
