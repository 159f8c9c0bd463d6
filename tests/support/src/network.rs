//! A network fault between a process and the real broker: a port where the
//! broker is unreachable (nothing listens) until the test opens it, from
//! when on every connection is relayed to the local RabbitMQ's AMQP port.

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The local broker's AMQP port, where an opened [`LateBroker`] relays to.
const BROKER: &str = "127.0.0.1:5672";

/// A port the broker appears on only once [`LateBroker::open`] is called;
/// closed again when dropped (with every relayed connection).
pub struct LateBroker {
    port: u16,
    relay: Option<JoinHandle<()>>,
}

impl LateBroker {
    /// A free port on 127.0.0.1 with nothing listening on it: connecting
    /// there is refused, as to a broker that is down.
    pub fn reserve() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("a bound address").port();
        drop(listener);
        Self { port, relay: None }
    }

    /// `AmqpUrl` for the local broker's guest user, through this port.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// From now on, connections to the port reach the broker.
    pub async fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the reserved port is still free");
        self.relay = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) ends every relay.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect(BROKER).await {
                        let _ = copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
            }
        }));
    }
}

impl Drop for LateBroker {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }
}
