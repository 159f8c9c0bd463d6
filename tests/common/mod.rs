//! What both test-support libraries (`tests/api/helpers.rs` and
//! `tests/support/`) need alike: a child process's output, and cleaning up
//! broker objects from a `Drop`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};

/// The local broker's management API.
pub const MANAGEMENT_API: &str = "http://127.0.0.1:15672/api";

/// Appends every line of `pipe` to `into`, each after `prefix`.
pub fn collect_lines(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
    prefix: &'static str,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut output = into.lock().unwrap();
            output.push_str(prefix);
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// Deletes `paths` (under the management API) as guest, waiting until done.
/// For `Drop`, which cannot await: it runs on a thread with its own runtime.
pub fn delete_now(paths: Vec<String>) {
    let cleanup = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = reqwest::Client::new();
            for path in paths {
                let _ = client
                    .delete(format!("{MANAGEMENT_API}/{path}"))
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await;
            }
        });
    });
    let _ = cleanup.join();
}

/// Sends SIGTERM to `child`, as the Functions host, systemd or a container runtime does.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("still running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
