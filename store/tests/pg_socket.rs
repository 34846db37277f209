//! The store's connections to PostgreSQL run with TCP_NODELAY (vendor/README.md): without
//! it, each `COPY` of a store transaction could wait 40 ms for the server's delayed ACK.
//! sqlx-core 0.9.0 as published does not set it; the vendored copy does. Its own test
//! binary, so no other test's connections come and go while it reads the process's sockets.

use std::os::fd::BorrowedFd;

use dmpflow_store::testing::{database_url, dispose, fresh_postgres};

/// The port of the PostgreSQL server the tests use, as sqlx reads it from the URL.
fn server_port() -> u16 {
    database_url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .get_port()
}

/// Whether each TCP socket of this process connected to `port` has TCP_NODELAY.
fn sockets_to(port: u16) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only read (getpeername, getsockopt) while this test's
        // pools hold their connections open; one that closed meanwhile fails the calls,
        // and a BorrowedFd never closes what it borrows.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let Ok(peer) = sock.peer_addr() else {
            continue;
        };
        if peer.as_socket().is_some_and(|a| a.port() == port) {
            found.push(sock.tcp_nodelay().unwrap());
        }
    }
    found
}

#[tokio::test]
async fn every_connection_to_postgres_has_tcp_nodelay() {
    let (store, db) = fresh_postgres("dmpflow_store", "nodelay").await;
    // The shared pool (migrations, ping) and the native one (registry lookups, batches).
    store.ping().await.unwrap();
    store.get_patients(&["1800175123456"]).await.unwrap();
    let sockets = sockets_to(server_port());
    assert!(
        sockets.len() >= 2,
        "expected the two pools' connections, found {}",
        sockets.len()
    );
    assert!(
        sockets.iter().all(|&nodelay| nodelay),
        "connections without TCP_NODELAY: {sockets:?}"
    );
    dispose(store, db).await;
}
