//! Runs gRPC (tonic) over the pinned-key mutual TLS of [`crate::tls`]: an incoming-connection
//! stream for the coordinator's server, and a channel for a module's client. The TLS
//! handshake is ours (tonic's own TLS settings cannot pin keys); tonic sees the finished
//! TLS streams, so `Request::peer_certs()` works in handlers.

use std::sync::Arc;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::transport::{Channel, Endpoint};

use crate::WireError;

/// Accepts TCP connections and completes each TLS handshake in its own task, yielding only
/// the connections that authenticated (failed handshakes are logged and dropped).
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conn_tx = tx.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                        .await;
                match handshake {
                    Ok(Ok(tls)) => {
                        let _ = conn_tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// HTTP/2 flow-control window of the module link's stream, each way, in bytes. A DKLs23
/// signing round sends 33–57 KB per peer: with HTTP/2's default 64 KB window a signer's
/// second message waits for the coordinator's window update (a round trip, measured at up
/// to 3 ms on the deposit path).
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 flow-control window of the module link's connection, in bytes.
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Connects a gRPC channel to `address` (`host:port`) over pinned-key mutual TLS.
pub async fn connect_channel(
    address: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, WireError> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let addr = address.to_owned();
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| WireError::Connect(format!("bad coordinator address {address}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(10))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let addr = addr.clone();
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                // The pin, not the name, authenticates the coordinator.
                let name = rustls::pki_types::ServerName::try_from("concord-coordinator")
                    .map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| {
            WireError::Connect(format!(
                "cannot connect to the coordinator at {address}: {}",
                error_chain(&e)
            ))
        })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
