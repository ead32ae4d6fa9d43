//! The webhook listener's connection loop, in place of `axum::serve` because webhooks face the
//! internet: a client gets `header_timeout` to send its request line and headers (a slowloris
//! holding connections open is cut off), headers larger than `max_header_size` are refused, TLS
//! is optional and its certificate can be swapped while serving, and a stop lets the requests in
//! flight finish. The body has its own deadline in `ingress`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service;
use tracing::{debug, warn};

use super::tls::TlsConfig;

/// What each connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From the connection's first byte (after the TLS handshake) or the end of the previous
    /// request, to the end of the headers. The TLS handshake gets as long again.
    pub header_timeout: Duration,
    /// The request line plus headers, in bytes.
    pub max_header_size: usize,
}

/// Serve `app` on `listener` until `stopped` turns true, then wait for open connections to
/// finish their requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<TlsConfig>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { stopped.wait_for(|stop| *stop).await.is_ok() } => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: pause rather than spin.
                warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            tls.as_ref().map(|t| t.current()),
            stopped.clone(),
        ));
    }
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stopped: watch::Receiver<bool>,
) {
    match tls {
        None => http1(TokioIo::new(stream), peer, app, limits, stopped).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http1(TokioIo::new(stream), peer, app, limits, stopped).await,
                Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http1<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            // What `into_make_service_with_connect_info` would add: handlers read the peer from it.
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request)
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper refuses (panics on) less than 8 KiB; settings already enforce it.
        .max_buf_size(limits.max_header_size.max(8192));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                debug!(%peer, error = %err, "connection closed with an error");
            }
        }
        _ = async { stopped.wait_for(|stop| *stop).await.is_ok() } => {
            // Finish the request in flight, take no other.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
