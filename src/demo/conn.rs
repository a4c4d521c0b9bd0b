//! Accepting connections, shared by the demo's chat backend and page server.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long a client may take to send its request head (and to finish a WebSocket upgrade).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
// Pause after a failed accept (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next connection on `listener`; a failed accept (e.g. EMFILE) is logged and retried
/// after [`ACCEPT_BACKOFF`].
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!(error = %e, "{what} accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
