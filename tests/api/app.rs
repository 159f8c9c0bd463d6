//! The handler in-process, as zero-to-production's `spawn_app` does it: the
//! real settings parsing and `startup::bind` on port 0, served on the test's
//! runtime until the test ends. For routing, limit and hostile-input tests,
//! which need no process of their own.

use std::collections::HashMap;
use std::ops::Deref;

use test_support::AppSettings;
use test_support::host::HostClient;
use tokio::sync::oneshot;
use webhook_forwarder::intake::startup;
use webhook_forwarder::settings::Settings;

/// The handler serving in this test's runtime; stops when dropped.
pub struct App {
    host: HostClient,
    _stop: oneshot::Sender<()>,
}

impl Deref for App {
    type Target = HostClient;

    fn deref(&self) -> &HostClient {
        &self.host
    }
}

/// Starts the handler with `settings` on 127.0.0.1, port 0.
pub async fn spawn_app(settings: &AppSettings) -> App {
    let mut map: HashMap<String, String> = settings.pairs().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
    map.insert("ListenAddress".to_owned(), "127.0.0.1:0".to_owned());
    let settings = Settings::from_map(&map).expect("the test's settings parse");
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, server) = startup::bind(settings, async {
        let _ = stopped.await;
    })
    .await
    .expect("the handler binds");
    tokio::spawn(server);
    App {
        host: HostClient::new(addr),
        _stop: stop,
    }
}
