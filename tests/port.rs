//! The listening port: how accepted connections are set up.

mod common;

use std::os::fd::BorrowedFd;

use common::{Backend, TestApp};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Returns whether each TCP socket of this process accepted on `server` has TCP_NODELAY.
fn accepted_sockets_nodelay(server: std::net::SocketAddr) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("the process's descriptors") {
        let Ok(fd) = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .parse::<i32>()
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below, while this process holds
        // it open (a descriptor closed meanwhile makes the calls fail, which is skipped).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let (Ok(local), Ok(_peer)) = (socket.local_addr(), socket.peer_addr()) else {
            continue;
        };
        if local.as_socket() == Some(server)
            && let Ok(nodelay) = socket.tcp_nodelay()
        {
            found.push(nodelay);
        }
    }
    found
}

// Regression: accepted sockets kept Nagle's algorithm, so a small response could wait for the
// client's delayed ACK (a 43 ms slowest call at one call in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_send_without_delay() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut health = HealthClient::new(app.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
    let accepted = accepted_sockets_nodelay(app.addr);
    assert!(
        !accepted.is_empty(),
        "no accepted connection found on {}",
        app.addr
    );
    assert!(
        accepted.iter().all(|nodelay| *nodelay),
        "accepted sockets without TCP_NODELAY: {accepted:?}"
    );
}
