//! The listener and the drain loop: accept, the checks that cost nothing before any byte is
//! read (twice `max_connections` open; the client IP's connection slot and handshake quota),
//! one task per connection, and on shutdown close 1001 to every live connection. A
//! connection's stages: `connection` (PROXY header, TLS, HTTP), `upgrade` (the request, the
//! backend, the relay) and `outcome` (its metrics and its one log line); `proxy` holds the
//! configuration in force. One tracing span per connection.

mod conn;
mod connection;
mod outcome;
mod passing;
mod phases;
mod proxy;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use crate::client_ip::client_at_accept;
use crate::state::State;
use connection::Client;
use outcome::Dropped;

pub use proxy::{Proxy, ProxyHandle, StartError};

/// How often idle per-IP state is dropped.
const HOUSEKEEPING: Duration = Duration::from_secs(10);

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    proxy: ProxyHandle,
    state: Arc<State>,
}

// === impl Server ===

impl Server {
    /// Binds the listen address and puts `proxy` in force over `state`.
    pub async fn bind(proxy: Proxy, state: Arc<State>) -> Result<Server, StartError> {
        let addr = proxy.config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Bind(addr, e))?;
        Ok(Server {
            listener,
            proxy: ProxyHandle::new(proxy, state.clone()),
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.proxy.current().config.server.listen)
    }

    /// A handle to swap the configuration (SIGHUP).
    pub fn handle(&self) -> ProxyHandle {
        self.proxy.clone()
    }

    /// Accepts until `shutdown` resolves, then drains: every live connection
    /// gets close 1001 both ways, and this returns once they are done or
    /// `shutdown_timeout` has passed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let first = self.proxy.current();
        tracing::info!(
            listen = %self.local_addr(),
            tls = first.tls.is_some(),
            routes = first.config.routes.len(),
            "wsguard listening"
        );
        drop(first);
        tokio::pin!(shutdown);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = housekeeping.tick() => self.state.housekeeping(),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.accept(stream, peer),
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        let grace = self.proxy.current().config.server.shutdown_timeout;
        let tracker = self.state.tracker();
        tracing::info!(
            connections = tracker.len(),
            grace_ms = outcome::millis(grace),
            "draining: stopped accepting, closing connections with 1001"
        );
        self.state.start_drain();
        if timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                connections = tracker.len(),
                "shutdown_timeout passed with connections still open"
            );
        } else {
            tracing::info!("drained");
        }
        // The other instances take this one's clients now: free their fleet-wide slots.
        if let Some(shared) = &self.state.shared {
            shared.release_all().await;
        }
    }

    fn accept(&self, stream: TcpStream, peer: SocketAddr) {
        let accepted = Instant::now();
        let proxy = self.proxy.current();
        let state = &self.state;
        state.metrics.connections_accepted.inc();
        // `client` is filled in when a PROXY header names someone other than the peer.
        let span = tracing::info_span!("conn", %peer, client = tracing::field::Empty);
        let drop_now = |why| span.in_scope(|| outcome::dropped(&state.metrics, why, None));
        // Over the cap, a connection still gets its 503 once its request is
        // read; far over it, it is dropped at once to keep file descriptors.
        let hard_cap = (proxy.config.limits.max_connections as usize).saturating_mul(2);
        if state.open_connections() >= hard_cap {
            return drop_now(Dropped::HardCap);
        }
        // The client IP known now takes its slot before TLS; a trusted proxy's PROXY header
        // names it once read, and X-Forwarded-For at the request.
        let client = if proxy.reads_proxy_header(peer.ip()) {
            None
        } else {
            match client_at_accept(&proxy.trusted, peer.ip(), None) {
                None => Some(Client::Forwarded),
                Some(ip) => match connection::admit(&state.ip_limits, ip) {
                    Ok(client) => Some(client),
                    Err(r) => return drop_now(Dropped::ClientIp(r)),
                },
            }
        };
        let open = state.open_connection();
        let task = connection::run(proxy, state.clone(), stream, peer, accepted, open, client);
        state.tracker().spawn(task.instrument(span));
    }
}
