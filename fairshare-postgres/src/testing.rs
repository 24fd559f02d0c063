//! A throwaway PostgreSQL server for tests, examples and benchmarks.
//!
//! [`TempPostgres::start`] finds the newest server under `/usr/lib/postgresql/<version>/bin`
//! (the Debian/Ubuntu layout of the `postgresql` package), runs `initdb` into a fresh
//! temporary directory and starts the server listening only on a unix socket in that
//! directory (no TCP port, so parallel test binaries never collide). Dropping the value stops
//! the server and removes the directory.
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root. When the effective uid is 0 (CI
//! containers), the directory is handed to the `postgres` system user (created by the Debian
//! package) with `chown`, and `initdb` and `pg_ctl` run through `runuser -u postgres --`.
//! The client still connects as the database role `postgres` over the socket (trust auth).
//!
//! # Cleanup
//!
//! A small watchdog shell (`sh`) holds the read end of a pipe whose write end only this
//! process has: when the value is dropped, or the process exits in any way (even `SIGKILL`,
//! or a `static` that is never dropped), the pipe closes and the watchdog stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why a throwaway server could not be started.
///
/// # Examples
///
/// ```
/// use fairshare_postgres::testing::ServerError;
/// let err = ServerError::MissingBinaries { searched: "/usr/lib/postgresql".into() };
/// assert!(err.to_string().contains("apt-get install postgresql"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No `postgres` binary under the searched directory.
    #[error(
        "PostgreSQL server binaries not found under {searched}/<version>/bin; install the Debian package `postgresql` (apt-get install postgresql)"
    )]
    MissingBinaries {
        /// The directory searched.
        searched: PathBuf,
    },
    /// Running as root, but there is no `postgres` system user to run the server as.
    #[error(
        "running as root, and no `postgres` user in /etc/passwd to run the server as; install the Debian package `postgresql` (it creates the user)"
    )]
    NoPostgresUser,
    /// A file-system step or a process spawn failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `initdb` or `pg_ctl` exited with an error.
    #[error("{what} failed ({status}): {output}")]
    Command {
        /// The command.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its output (and the server log, if any).
        output: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A running throwaway PostgreSQL server; stopped and deleted on drop.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use fairshare_postgres::testing::TempPostgres;
/// let server = TempPostgres::start()?;
/// let client = fairshare_postgres::connect(&server.connection_string()).await?;
/// let row = client.query_one("SELECT 1 + 1", &[]).await?;
/// assert_eq!(row.get::<_, i32>(0), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TempPostgres {
    dir: PathBuf,
    port: u16,
    version: String,
    watchdog: Option<(Child, ChildStdin)>,
}

/// Uid and gid of the `postgres` system user, from `/etc/passwd`.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == "postgres").then_some(())?;
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// Whether this process runs with effective uid 0 (from `/proc/self/status`, so no unsafe
/// `geteuid` call; falls back to `id -u`).
fn is_root() -> bool {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding a `postgres` binary.
fn newest_bin(root: &Path) -> Option<(String, PathBuf)> {
    let mut best: Option<(Vec<u64>, String, PathBuf)> = None;
    for entry in fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bin = entry.path().join("bin");
        if !bin.join("postgres").is_file() {
            continue;
        }
        let key: Vec<u64> = name.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
            best = Some((key, name, bin));
        }
    }
    best.map(|(_, name, bin)| (name, bin))
}

impl TempPostgres {
    /// Initialises and starts a server in a new temporary directory (see the
    /// [module docs](self) for the root case), waiting until it accepts connections.
    ///
    /// # Errors
    ///
    /// [`ServerError::MissingBinaries`] (naming the Debian package `postgresql`) if no server
    /// is installed, [`ServerError::NoPostgresUser`] as root without a `postgres` user, and
    /// the failing step otherwise.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let server = fairshare_postgres::testing::TempPostgres::start()?;
    /// println!("{}", server.connection_string());
    /// # Ok::<(), fairshare_postgres::testing::ServerError>(())
    /// ```
    pub fn start() -> Result<Self, ServerError> {
        Self::start_in(Path::new("/usr/lib/postgresql"))
    }

    fn start_in(root: &Path) -> Result<Self, ServerError> {
        let (version, bin) = newest_bin(root).ok_or_else(|| ServerError::MissingBinaries {
            searched: root.to_owned(),
        })?;
        let run_as = if is_root() {
            Some(postgres_user().ok_or(ServerError::NoPostgresUser)?)
        } else {
            None
        };
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fairshare-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err("removing a stale server directory"))?;
        }
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(io_err("handing the server directory to the postgres user"))?;
        }
        let as_postgres = |program: &Path| {
            let mut cmd = if run_as.is_some() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            cmd.stdin(Stdio::null());
            cmd
        };
        let data = dir.join("data");
        let port: u16 = 5432;

        // The watchdog first, so that even a failed start is cleaned up.
        let stop_cmd = format!(
            "{runas}'{pg_ctl}' stop -D '{data}' -m immediate",
            runas = if run_as.is_some() {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
        );
        let script = format!(
            "trap '' INT TERM HUP; read _ignored; {stop_cmd} >/dev/null 2>&1; rm -rf '{}'",
            dir.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("spawning the cleanup watchdog (sh)"))?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let server = TempPostgres {
            dir: dir.clone(),
            port,
            version,
            watchdog: Some((child, stdin)),
        };

        let run = |mut cmd: Command, what: &str| -> Result<(), ServerError> {
            let out = cmd.output().map_err(io_err(format!("running {what}")))?;
            if out.status.success() {
                return Ok(());
            }
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            if let Ok(log) = fs::read_to_string(dir.join("server.log")) {
                output.push_str("\nserver log:\n");
                output.push_str(&log);
            }
            Err(ServerError::Command {
                what: what.to_owned(),
                status: out.status,
                output,
            })
        };
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        run(initdb, "initdb")?;
        let mut pg_ctl = as_postgres(&bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-k {} -c listen_addresses='' -p {port} -F -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=150",
                dir.display()
            ))
            .arg("start");
        run(pg_ctl, "pg_ctl start")?;
        Ok(server)
    }

    /// A libpq-style connection string for the server (database and role `postgres`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let server = fairshare_postgres::testing::TempPostgres::start()?;
    /// assert!(server.connection_string().starts_with("host=/"));
    /// # Ok::<(), fairshare_postgres::testing::ServerError>(())
    /// ```
    pub fn connection_string(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// The PostgreSQL major version directory the server runs from, e.g. `"15"`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let server = fairshare_postgres::testing::TempPostgres::start()?;
    /// println!("PostgreSQL {}", server.version());
    /// # Ok::<(), fairshare_postgres::testing::ServerError>(())
    /// ```
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The temporary directory (data directory and socket).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let server = fairshare_postgres::testing::TempPostgres::start()?;
    /// assert!(server.dir().join("data").is_dir());
    /// # Ok::<(), fairshare_postgres::testing::ServerError>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            // Closing the pipe tells the watchdog to stop the server and remove the
            // directory; wait so the directory is gone when drop returns.
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

// ===== FifoQueue =====

/// The plain FIFO job queue most Rust job queues run on PostgreSQL (`ORDER BY id LIMIT n
/// FOR UPDATE SKIP LOCKED`), as a yardstick for the example, the fairness test and the
/// benchmarks. It has no tenants' fairness, no leases' expiry and no retries: it is the
/// baseline, not a product.
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// use fairshare_postgres::testing::FifoQueue;
/// let fifo = FifoQueue::new("fifo")?;
/// fifo.migrate(&client).await?;
/// fifo.enqueue_batch(&client, None, "acme", &[b"a".to_vec(), b"b".to_vec()]).await?;
/// for (id, tenant, payload) in fifo.claim(&client, None, "w1", 10).await? {
///     fifo.complete(&client, None, id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FifoQueue {
    schema: String,
    claim: String,
    insert: String,
    complete: String,
}

/// [`FifoQueue`]'s statements prepared on one connection, as job queues that cache prepared
/// statements run them (the fair comparison with a [`Session`](crate::Session)).
///
/// # Examples
///
/// ```no_run
/// # async fn run(client: tokio_postgres::Client, fifo: fairshare_postgres::testing::FifoQueue) -> Result<(), fairshare_postgres::Error> {
/// let prep = fifo.prepare(&client).await?;
/// let jobs = fifo.claim(&client, Some(&prep), "w1", 1).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FifoPrepared {
    claim: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
    complete: tokio_postgres::Statement,
}

impl FifoQueue {
    /// Prepares the claim, insert and complete statements on `client`.
    ///
    /// # Errors
    ///
    /// Database and connection errors (the schema must exist).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: tokio_postgres::Client, fifo: fairshare_postgres::testing::FifoQueue) -> Result<(), fairshare_postgres::Error> {
    /// let prep = fifo.prepare(&client).await?;
    /// # Ok(()) }
    /// ```
    pub async fn prepare<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
    ) -> Result<FifoPrepared, crate::Error> {
        use tokio_postgres::types::Type;
        Ok(FifoPrepared {
            claim: client
                .prepare_typed(&self.claim, &[Type::TEXT, Type::INT8])
                .await?,
            insert: client
                .prepare_typed(&self.insert, &[Type::TEXT, Type::BYTEA_ARRAY])
                .await?,
            complete: client.prepare_typed(&self.complete, &[Type::INT8]).await?,
        })
    }

    /// A FIFO queue in schema `schema`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchemaName`](crate::Error::InvalidSchemaName), as for
    /// [`QueueConfig::new`](crate::QueueConfig::new).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare_postgres::testing::FifoQueue::new("fifo").is_ok());
    /// ```
    pub fn new(schema: &str) -> Result<Self, crate::Error> {
        crate::QueueConfig::new(schema)?;
        let s = format!("\"{schema}\"");
        Ok(FifoQueue {
            schema: schema.to_owned(),
            claim: format!(
                "WITH pick AS (
                     SELECT id FROM {s}.jobs WHERE state = 'queued'
                      ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE {s}.jobs j SET state = 'running', worker = $1, claimed_at = now(),
                        lease_until = now() + interval '30 seconds'
                   FROM pick WHERE j.id = pick.id
                 RETURNING j.id, j.tenant, j.payload"
            ),
            insert: format!(
                "INSERT INTO {s}.jobs (tenant, payload)
                 SELECT $1, p FROM unnest($2::bytea[]) AS p RETURNING id"
            ),
            complete: format!(
                "UPDATE {s}.jobs SET state = 'done', finished_at = now()
                  WHERE id = $1 AND state = 'running'"
            ),
        })
    }

    /// Creates the schema and its `jobs` table (`id`, `tenant`, `payload`, `state`, `worker`,
    /// `lease_until`, `created_at`, `claimed_at`, `finished_at`, and a partial index on `id`
    /// for queued jobs). Idempotent.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// fairshare_postgres::testing::FifoQueue::new("fifo")?.migrate(&client).await?;
    /// # Ok(()) }
    /// ```
    pub async fn migrate<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
    ) -> Result<(), crate::Error> {
        let s = format!("\"{}\"", self.schema);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.jobs (
                     id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     tenant text NOT NULL,
                     payload bytea NOT NULL,
                     state text NOT NULL DEFAULT 'queued',
                     worker text,
                     lease_until timestamptz,
                     created_at timestamptz NOT NULL DEFAULT now(),
                     claimed_at timestamptz,
                     finished_at timestamptz);
                 CREATE INDEX IF NOT EXISTS jobs_queued ON {s}.jobs (id) WHERE state = 'queued';"
            ))
            .await?;
        Ok(())
    }

    /// Inserts `payloads` for `tenant` with one `INSERT ... SELECT FROM unnest(...)`; their
    /// ids.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: tokio_postgres::Client, fifo: fairshare_postgres::testing::FifoQueue) -> Result<(), fairshare_postgres::Error> {
    /// let ids = fifo.enqueue_batch(&client, None, "acme", &[vec![1], vec![2]]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_batch<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&FifoPrepared>,
        tenant: &str,
        payloads: &[Vec<u8>],
    ) -> Result<Vec<i64>, crate::Error> {
        use crate::exec::Exec;
        use tokio_postgres::types::Type;
        let rows = client
            .run_query(
                prep.map(|p| &p.insert),
                &self.insert,
                &[(&tenant, Type::TEXT), (&payloads, Type::BYTEA_ARRAY)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Claims up to `n` jobs in id order; `(id, tenant, payload)` each.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: tokio_postgres::Client, fifo: fairshare_postgres::testing::FifoQueue) -> Result<(), fairshare_postgres::Error> {
    /// let jobs = fifo.claim(&client, None, "w1", 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn claim<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&FifoPrepared>,
        worker: &str,
        n: u32,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, crate::Error> {
        use crate::exec::Exec;
        use tokio_postgres::types::Type;
        let n = i64::from(n);
        let rows = client
            .run_query(
                prep.map(|p| &p.claim),
                &self.claim,
                &[(&worker, Type::TEXT), (&n, Type::INT8)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Marks a claimed job done; whether it was running.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: tokio_postgres::Client, fifo: fairshare_postgres::testing::FifoQueue) -> Result<(), fairshare_postgres::Error> {
    /// for (id, _, _) in fifo.claim(&client, None, "w1", 1).await? {
    ///     assert!(fifo.complete(&client, None, id).await?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn complete<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&FifoPrepared>,
        id: i64,
    ) -> Result<bool, crate::Error> {
        use crate::exec::Exec;
        use tokio_postgres::types::Type;
        Ok(client
            .run_execute(
                prep.map(|p| &p.complete),
                &self.complete,
                &[(&id, Type::INT8)],
            )
            .await?
            == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_the_package() {
        let empty = std::env::temp_dir().join(format!("fairshare-pg-empty-{}", std::process::id()));
        fs::create_dir_all(&empty).unwrap();
        let err = TempPostgres::start_in(&empty).unwrap_err();
        fs::remove_dir_all(&empty).unwrap();
        assert!(matches!(err, ServerError::MissingBinaries { .. }));
        assert!(err.to_string().contains("`postgresql`"), "{err}");
    }

    #[test]
    fn newest_version_wins() {
        let root =
            std::env::temp_dir().join(format!("fairshare-pg-versions-{}", std::process::id()));
        for v in ["9.6", "15", "13", "16"] {
            let bin = root.join(v).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if v != "16" {
                fs::write(bin.join("postgres"), b"").unwrap();
            }
        }
        let (version, bin) = newest_bin(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(version, "15"); // 16 has no server binary
        assert!(bin.ends_with("15/bin"));
    }
}
