//! A TCP proxy the test controls, put between oms and a server it depends on (PostgreSQL, the
//! broker) to cut the network between them: `cut` drops every connection through it and closes
//! each new one at once, as a server that went away behind a load balancer; `restore` forwards
//! again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub port: u16,
    state: Arc<ProxyState>,
    accepting: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    upstream: SocketAddr,
    open: AtomicBool,
    /// Bumped by every cut; each forwarding task ends when it changes.
    cuts: watch::Sender<u64>,
    refused: AtomicU64,
}

impl TcpProxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream,
            open: AtomicBool::new(true),
            cuts: watch::channel(0).0,
            refused: AtomicU64::new(0),
        });
        let accepting = tokio::spawn(accept(listener, state.clone()));
        TcpProxy {
            port,
            state,
            accepting,
        }
    }

    /// Drops every open connection and closes new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        self.state.cuts.send_modify(|cuts| *cuts += 1);
    }

    pub fn restore(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }

    /// How many connections were closed on arrival because the proxy was cut.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// `url` (`scheme://user@host:port/path`) with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

/// The server address of a `scheme://user@host:port/...` URL.
pub fn address_of(url: &str) -> SocketAddr {
    let (_, rest) = url.split_once("://").expect("a URL with a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().expect("a host:port address")
}

async fn accept(listener: TcpListener, state: Arc<ProxyState>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !state.open.load(Ordering::SeqCst) {
            state.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, state.clone()));
    }
}

async fn forward(mut client: TcpStream, state: Arc<ProxyState>) {
    let mut cuts = state.cuts.subscribe();
    // A cut between the check on arrival and the subscription above.
    if !state.open.load(Ordering::SeqCst) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(state.upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {}
    }
    // Dropping both ends closes them: the client sees its connection go.
}
