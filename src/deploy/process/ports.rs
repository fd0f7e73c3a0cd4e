//! The loopback ports of supervised HTTP processes.

use std::time::Duration;

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
pub(super) async fn wait_for_port(port: u16, timeout: Duration) -> Result<(), String> {
    let poll = async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(timeout, poll).await.map_err(|_| {
        format!(
            "did not accept connections on port {port} within {}",
            humantime::format_duration(timeout)
        )
    })
}

/// A free loopback port, for a process that names none.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
