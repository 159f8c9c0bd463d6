//! Network faults between a process and the real broker: a port where the
//! broker is unreachable (nothing listens) until the test opens it, from
//! when on every connection is relayed to the local RabbitMQ's AMQP port,
//! and where the test can stall the traffic (a network that silently stops
//! delivering, so that the broker's answers never arrive) and resume it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A port the broker appears on only once [`LateBroker::open`] is called;
/// closed again when dropped (with every relayed connection).
pub struct LateBroker {
    port: u16,
    /// Bound and not listening until [`LateBroker::open`]: the port stays
    /// ours (no other socket, nor an outgoing connection, can take it),
    /// while connecting to it is refused.
    reserved: Option<TcpSocket>,
    stalled: Arc<AtomicBool>,
    relay: Option<JoinHandle<()>>,
}

impl LateBroker {
    /// A free port on 127.0.0.1 with nothing listening on it: connecting
    /// there is refused, as to a broker that is down. Binding it without
    /// listening keeps it: a port freed and bound again later was once
    /// taken meanwhile as the local port of some other connection.
    pub fn reserve() -> Self {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("a free port");
        let port = socket.local_addr().expect("a bound address").port();
        Self {
            port,
            reserved: Some(socket),
            stalled: Arc::new(AtomicBool::new(false)),
            relay: None,
        }
    }

    /// `AmqpUrl` for the local broker's guest user, through this port.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// From now on, connections to the port reach the broker.
    pub async fn open(&mut self) {
        let listener = self
            .reserved
            .take()
            .expect("the port is opened once")
            .listen(1024)
            .expect("listening on the reserved port");
        let stalled = self.stalled.clone();
        self.relay = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) ends every relay.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let stalled = stalled.clone();
                connections.spawn(async move {
                    let Ok(broker) = TcpStream::connect(("127.0.0.1", crate::broker::amqp_port())).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_broker, to_broker) = broker.into_split();
                    tokio::join!(
                        forward(from_client, to_broker, stalled.clone()),
                        forward(from_broker, to_client, stalled)
                    );
                });
            }
        }));
    }

    /// Holds every byte in both directions until [`LateBroker::resume`]:
    /// the connections stay open, nothing arrives.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Delivers again, what was held first.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }
}

impl Drop for LateBroker {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }
}

/// Copies `from` to `to`, holding each chunk while the network is stalled.
async fn forward(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, stalled: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
