//! Shared helpers: one throwaway PostgreSQL server per test binary, a fresh schema per test.

#![allow(dead_code)] // reason: each test binary uses a different subset of the helpers

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use fairshare_postgres::testing::TempPostgres;
use fairshare_postgres::{Queue, QueueConfig};
use tokio_postgres::Client;

static SERVER: OnceLock<TempPostgres> = OnceLock::new();

/// The binary's server, started on first use; its watchdog removes it when the binary exits.
pub(crate) fn server() -> &'static TempPostgres {
    SERVER.get_or_init(|| TempPostgres::start().unwrap_or_else(|e| panic!("{e}")))
}

pub(crate) async fn client() -> Client {
    fairshare_postgres::connect(&server().connection_string())
        .await
        .expect("connect to the test server")
}

/// A schema name no other test in this binary uses.
pub(crate) fn fresh_schema(name: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!("t_{name}_{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A migrated queue in a fresh schema, configured by `f`, and a client.
pub(crate) async fn queue(
    name: &str,
    f: impl FnOnce(QueueConfig) -> QueueConfig,
) -> (Queue, Client) {
    let config = f(QueueConfig::new(&fresh_schema(name)).unwrap());
    let queue = Queue::new(config);
    let mut client = client().await;
    queue.migrate(&mut client).await.unwrap();
    (queue, client)
}

/// Percentile (nearest rank) of unsorted samples; 0 for none.
pub(crate) fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}
