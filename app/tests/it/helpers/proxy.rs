//! A TCP proxy in front of the database, to take it away and bring it back while the app runs:
//! `cut` closes the listener and every open connection (the database is gone); `restore` listens
//! again on the same port.
use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// The accept loop while listening, and how to stop it with its connections.
type Running = Option<(CancellationToken, JoinHandle<()>)>;

pub struct Proxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    running: Arc<Mutex<Running>>,
}

impl Proxy {
    /// A proxy on a free port, not yet listening (the database starts out "down").
    pub async fn reserve(target: SocketAddr) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        Proxy {
            addr,
            target,
            running: Arc::default(),
        }
    }

    pub async fn restore(&self) {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let stop = CancellationToken::new();
        let (target, token) = (self.target, stop.clone());
        let task = tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = token.cancelled() => return,
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        *running = Some((stop, task));
    }

    pub async fn cut(&self) {
        if let Some((stop, task)) = self.running.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
    }
}
