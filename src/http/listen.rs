//! The webhook listener's connection loop, in place of `axum::serve` because webhooks face the
//! internet: a client gets `header_timeout` to send its request line and headers (a slowloris
//! holding connections open is cut off), headers larger than `max_header_size` are refused, TLS
//! is optional and its certificate can be swapped while serving, and a stop lets the requests in
//! flight finish. The body has its own deadline in `ingress`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// The request line plus headers, in bytes: everything before the body, the CRLF that ends
    /// each line and the empty line after the last header included.
    pub max_header_size: usize,
    /// How long an answer (or a TLS handshake message) may wait, without a byte going out, for
    /// a client that stopped reading: hyper has no write deadline, and such a connection would
    /// otherwise be held, and a stop wait for it, forever.
    pub write_stall_timeout: Duration,
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
    let stream = StallLimit::new(stream, limits.write_stall_timeout);
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
        // The limit itself: the parsed request line and headers, up to and including the blank
        // line that ends them. The read buffer's own maximum is no limit: a read may fill more
        // than it (a header block of 112 KiB once passed a 64 KiB buffer).
        .max_header_size(limits.max_header_size)
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

/// A stream whose writes fail once they have waited `limit` without progress: the client has
/// stopped reading (say, it pipelines requests and never reads the answers).
struct StallLimit<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits; disarmed by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// `Ready(Err)` once the write has waited too long, else `Pending` with the timer armed.
    fn wait<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.wait(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, poll)
    }
}
