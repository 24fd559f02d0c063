#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]
//! The queue against a real PostgreSQL: order, leases, races, retries, operators, limits.

mod common;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use common::{client, queue};
use fairshare::config::Quota;
use fairshare_postgres::{Error, FailOutcome, JobState, NewJob, Queue, Reaped, Session};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn jobs(n: usize, tag: &str) -> Vec<NewJob> {
    (0..n).map(|i| NewJob::new(format!("{tag}-{i}"))).collect()
}

async fn claim_all(queue: &Queue, client: &tokio_postgres::Client) -> Vec<fairshare_postgres::Job> {
    let mut out = Vec::new();
    loop {
        let batch = queue.claim(client, "drain", 100).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[tokio::test]
async fn smoke_flood_then_newcomer() {
    let (q, mut c) = queue("smoke", |c| c).await;
    let ids = q
        .enqueue_batch(&mut c, "acme", &jobs(1000, "a"))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let g = q
        .enqueue(&mut c, "globex", &NewJob::new("g"))
        .await
        .unwrap();
    let first = q.claim(&c, "w", 3).await.unwrap();
    let order: Vec<&str> = first.iter().map(|j| j.tenant()).collect();
    assert_eq!(order, ["acme", "globex", "acme"]);
    assert_eq!(first[1].id(), g);
    assert_eq!(first[0].payload(), b"a-0");
    assert_eq!(first[2].payload(), b"a-1");
    for j in &first {
        q.complete(&mut c, j.lease(), 1).await.unwrap();
    }
    let counts = q.counts(&c).await.unwrap();
    assert_eq!((counts.queued, counts.running, counts.done), (998, 0, 3));
}

#[tokio::test]
async fn migrate_is_idempotent_and_concurrent() {
    let (q, _c) = queue("migrate", |c| c).await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let mut c = client().await;
            q.migrate(&mut c).await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn enqueue_inside_host_transaction_commits_or_rolls_back() {
    let (q, mut c) = queue("hosttx", |c| c).await;
    {
        let mut tx = c.transaction().await.unwrap();
        q.enqueue_batch(&mut tx, "acme", &jobs(10, "x"))
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(q.counts(&c).await.unwrap().queued, 0);
    {
        let mut tx = c.transaction().await.unwrap();
        q.enqueue_batch(&mut tx, "acme", &jobs(10, "y"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(q.counts(&c).await.unwrap().queued, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_8_claimers_no_job_twice_all_claimed() {
    let (q, mut c) = queue("race_claim", |c| c).await;
    let total = 2_000;
    for t in 0..10 {
        q.enqueue_batch(&mut c, &format!("t{t}"), &jobs(total / 10, "r"))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for w in 0..8 {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let mut c = client().await;
            let mut mine = Vec::new();
            loop {
                let batch = q.claim(&c, &format!("w{w}"), 7).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                for j in batch {
                    q.complete(&mut c, j.lease(), 1).await.unwrap();
                    mine.push(j.id());
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut n = 0;
    for h in handles {
        for id in h.await.unwrap() {
            n += 1;
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(n, total);
    let counts = q.counts(&c).await.unwrap();
    assert_eq!(
        (counts.queued, counts.running, counts.done),
        (0, 0, total as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_4_enqueuers_one_tenant_distinct_passes_in_order() {
    let (q, _c) = queue("race_enq", |c| c).await;
    let mut handles = Vec::new();
    for e in 0..4 {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let mut c = client().await;
            let mut ids = Vec::new();
            for b in 0..25 {
                let batch: Vec<NewJob> = (0..4)
                    .map(|i| NewJob::new(format!("{e}-{b}-{i}")))
                    .collect();
                ids.extend(q.enqueue_batch(&mut c, "solo", &batch).await.unwrap());
            }
            ids
        }));
    }
    let mut per_enqueuer = Vec::new();
    for h in handles {
        per_enqueuer.push(h.await.unwrap());
    }
    let c = client().await;
    let claimed = claim_all(&q, &c).await;
    assert_eq!(claimed.len(), 400);
    let passes: HashSet<u64> = claimed.iter().map(|j| j.pass()).collect();
    assert_eq!(passes.len(), 400, "passes must be distinct");
    // Claim order is pass order, and each enqueuer's jobs come out in the order it enqueued.
    assert!(claimed.windows(2).all(|w| w[0].pass() < w[1].pass()));
    let pos: HashMap<_, _> = claimed
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id(), i))
        .collect();
    for ids in per_enqueuer {
        assert!(ids.windows(2).all(|w| pos[&w[0]] < pos[&w[1]]));
    }
}

#[tokio::test]
async fn expired_lease_completion_refused_and_taken_over() {
    let (q, mut c) = queue("lease", |c| c.with_lease(Duration::from_millis(600))).await;
    q.enqueue(&mut c, "acme", &NewJob::new("x")).await.unwrap();
    let old = q.claim(&c, "w1", 1).await.unwrap().remove(0);
    // While the lease holds nobody else gets the job.
    assert!(q.claim(&c, "w2", 1).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let err = q.complete(&mut c, old.lease(), 1).await.unwrap_err();
    assert!(
        matches!(err, Error::LeaseExpired { job } if job == old.id()),
        "{err}"
    );
    let mut lease = old.lease().clone();
    assert!(matches!(
        q.extend_lease(&c, &mut lease, Duration::from_secs(5)).await,
        Err(Error::LeaseExpired { .. })
    ));
    // Someone else takes it over; the old lease stays refused, for every report.
    let new = q.claim(&c, "w2", 1).await.unwrap().remove(0);
    assert_eq!(new.id(), old.id());
    assert_ne!(new.lease().token(), old.lease().token());
    assert_eq!(new.lease().attempt(), 2);
    for err in [
        q.complete(&mut c, old.lease(), 1).await.unwrap_err(),
        q.complete(&mut c, old.lease(), 5).await.unwrap_err(),
        q.fail(&c, old.lease(), "late").await.unwrap_err(),
        q.release(&c, old.lease()).await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::LeaseTakenOver { .. }), "{err}");
        assert!(err.is_lease_lost());
    }
    q.complete(&mut c, new.lease(), 1).await.unwrap();
    assert!(matches!(
        q.complete(&mut c, new.lease(), 1).await,
        Err(Error::AlreadyFinished {
            state: JobState::Done,
            ..
        })
    ));
    assert_eq!(q.counts(&c).await.unwrap().done, 1);
}

#[tokio::test]
async fn extend_lease_keeps_the_job() {
    let (q, mut c) = queue("extend", |c| c.with_lease(Duration::from_millis(300))).await;
    q.enqueue(&mut c, "acme", &NewJob::new("x")).await.unwrap();
    let job = q.claim(&c, "w1", 1).await.unwrap().remove(0);
    let (_, mut lease) = job.into_parts();
    let before = lease.until();
    q.extend_lease(&c, &mut lease, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(lease.until() > before);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(q.claim(&c, "w2", 1).await.unwrap().is_empty());
    q.complete(&mut c, &lease, 1).await.unwrap();
}

#[tokio::test]
async fn lost_connection_mid_claim_loses_nothing() {
    let (q, mut c) = queue("lostconn", |c| c.with_lease(Duration::from_millis(1000))).await;
    q.enqueue_batch(&mut c, "acme", &jobs(3, "l"))
        .await
        .unwrap();
    let worker = client().await;
    let pid: i32 = worker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let claimed = q.claim(&worker, "doomed", 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // The worker's connection dies before it reports.
    c.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = q.claim(&worker, "doomed", 1).await.unwrap_err();
    assert!(
        matches!(err, Error::ConnectionLost { .. } | Error::Database { .. }),
        "{err}"
    );
    // Its two jobs stay leased, then come back.
    let now = q.claim(&c, "w2", 10).await.unwrap();
    assert_eq!(now.len(), 1);
    q.complete(&mut c, now[0].lease(), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let back = q.claim(&c, "w2", 10).await.unwrap();
    let mut back_ids: Vec<_> = back.iter().map(|j| j.id()).collect();
    back_ids.sort();
    let mut lost: Vec<_> = claimed.iter().map(|j| j.id()).collect();
    lost.sort();
    assert_eq!(back_ids, lost);
    assert!(back.iter().all(|j| j.lease().attempt() == 2));
}

#[tokio::test]
async fn unreachable_database_is_a_connect_error() {
    let err = fairshare_postgres::connect("host=/nonexistent-dir port=1 user=x connect_timeout=2")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().starts_with("cannot connect to PostgreSQL"));
    let err = fairshare_postgres::connect("host=127.0.0.1 port=1 user=x connect_timeout=2")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}

#[tokio::test]
async fn block_refuses_with_reason_purge_returns_ids() {
    let (q, mut c) = queue("block", |c| c).await;
    let ids = q
        .enqueue_batch(&mut c, "acme", &jobs(50, "b"))
        .await
        .unwrap();
    let keep = q
        .enqueue(&mut c, "globex", &NewJob::new("g"))
        .await
        .unwrap();
    let running = q.claim(&c, "w", 1).await.unwrap().remove(0);
    assert_eq!(running.id(), ids[0]);

    q.block(&c, "acme", "abuse: 140k invalid jobs")
        .await
        .unwrap();
    let err = q
        .enqueue(&mut c, "acme", &NewJob::new("more"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Blocked { tenant, reason } if tenant == "acme" && reason == "abuse: 140k invalid jobs"),
        "{err}"
    );
    assert_eq!(
        q.tenant(&c, "acme")
            .await
            .unwrap()
            .unwrap()
            .blocked_reason
            .as_deref(),
        Some("abuse: 140k invalid jobs")
    );
    // Others are unaffected.
    q.enqueue(&mut c, "globex", &NewJob::new("g2"))
        .await
        .unwrap();

    let purged = q.purge(&c, "acme").await.unwrap();
    assert_eq!(purged.len(), 49);
    assert_eq!(purged.ids, ids[1..]);
    // The running job is left to finish; globex's jobs are untouched.
    q.complete(&mut c, running.lease(), 1).await.unwrap();
    let rest = claim_all(&q, &c).await;
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].id(), keep);
    assert!(rest.iter().all(|j| j.tenant() == "globex"));

    assert!(q.unblock(&c, "acme").await.unwrap());
    assert!(!q.unblock(&c, "acme").await.unwrap());
    q.enqueue(&mut c, "acme", &NewJob::new("ok")).await.unwrap();
    // Blocking a tenant that never enqueued works too.
    q.block(&c, "newbie", "kyc pending").await.unwrap();
    assert!(matches!(
        q.enqueue(&mut c, "newbie", &NewJob::new("x")).await,
        Err(Error::Blocked { .. })
    ));
}

#[tokio::test]
async fn retry_backoff_then_dead_letter() {
    let base = Duration::from_millis(200);
    let (q, mut c) = queue("retry", |c| {
        c.with_backoff(base, Duration::from_secs(10))
            .with_max_attempts(nz(3))
    })
    .await;
    let id = q
        .enqueue(&mut c, "acme", &NewJob::new("flaky"))
        .await
        .unwrap();
    for attempt in 1..=2u32 {
        let job = q.claim(&c, "w", 1).await.unwrap().remove(0);
        assert_eq!((job.id(), job.lease().attempt()), (id, attempt));
        if attempt == 2 {
            assert_eq!(job.last_error(), Some("boom 1"));
        }
        let t0 = SystemTime::now();
        let outcome = q
            .fail(&c, job.lease(), &format!("boom {attempt}"))
            .await
            .unwrap();
        let FailOutcome::Retrying { at, after } = outcome else {
            panic!("attempt {attempt} must be retried, got {outcome:?}");
        };
        let want = base * 2u32.pow(attempt - 1);
        assert_eq!(after, want);
        // Not claimable before the backoff, claimable after.
        assert!(q.claim(&c, "w", 1).await.unwrap().is_empty());
        let wait = at.duration_since(t0).unwrap_or_default();
        assert!(wait <= want + Duration::from_millis(200), "{wait:?}");
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
        if attempt == 1 {
            // Half-way through the second backoff the job is still not claimable.
            continue;
        }
    }
    let job = q.claim(&c, "w", 1).await.unwrap().remove(0);
    assert_eq!(job.lease().attempt(), 3);
    assert_eq!(
        q.fail(&c, job.lease(), "boom 3").await.unwrap(),
        FailOutcome::Dead
    );
    assert!(q.claim(&c, "w", 1).await.unwrap().is_empty());
    let dead = q.dead_jobs(&c, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].job, dead[0].attempts), (id, 3));
    assert_eq!(dead[0].last_error.as_deref(), Some("boom 3"));
    assert_eq!(dead[0].payload, b"flaky");
    // Operators can requeue it.
    assert!(q.requeue_dead(&c, id).await.unwrap());
    let again = q.claim(&c, "w", 1).await.unwrap().remove(0);
    assert_eq!((again.id(), again.lease().attempt()), (id, 1));
}

/// Regression (found by the `postgres` fuzz target): from the 33rd attempt on, the backoff
/// jumped to the maximum whatever the base (a zero base too), instead of `base · 2^(k-1)` up
/// to the maximum.
#[test]
fn backoff_is_exact_up_to_the_maximum_for_every_attempt() {
    let year = Duration::from_secs(365 * 86_400);
    let c = fairshare_postgres::QueueConfig::new("q")
        .unwrap()
        .with_backoff(Duration::from_millis(1), year);
    for attempt in 1..=34 {
        let exact = Duration::from_millis(1 << (attempt - 1));
        assert_eq!(c.backoff(attempt), exact.min(year), "attempt {attempt}");
    }
    assert_eq!(c.backoff(u32::MAX), year);
    let zero = c.with_backoff(Duration::ZERO, year);
    for attempt in [1, 32, 33, 64, 200, u32::MAX] {
        assert_eq!(zero.backoff(attempt), Duration::ZERO, "attempt {attempt}");
    }
}

#[tokio::test]
async fn backoff_delay_is_honoured() {
    let (q, mut c) = queue("backoff", |c| {
        c.with_backoff(Duration::from_millis(500), Duration::from_secs(10))
    })
    .await;
    q.enqueue(&mut c, "acme", &NewJob::new("x")).await.unwrap();
    let job = q.claim(&c, "w", 1).await.unwrap().remove(0);
    let _ = q.fail(&c, job.lease(), "e").await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        q.claim(&c, "w", 1).await.unwrap().is_empty(),
        "claimed during backoff"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(q.claim(&c, "w", 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn lease_expiring_on_last_attempt_dead_letters() {
    let (q, mut c) = queue("poison", |c| {
        c.with_lease(Duration::from_millis(200))
            .with_max_attempts(nz(2))
    })
    .await;
    let id = q
        .enqueue(&mut c, "acme", &NewJob::new("kills workers"))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(q.claim(&c, "w", 1).await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(q.claim(&c, "w", 1).await.unwrap().is_empty());
    let dead = q.dead_jobs(&c, 1).await.unwrap();
    assert_eq!(dead[0].job, id);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("lease of worker w expired on attempt 2 of 2")
    );
}

#[tokio::test]
async fn undecodable_payload_is_dead_lettered_not_lost() {
    let (q, mut c) = queue("decode", |c| c).await;
    let batch = vec![
        NewJob::new("17"),
        NewJob::new("not a number"),
        NewJob::new("42"),
    ];
    let ids = q.enqueue_batch(&mut c, "acme", &batch).await.unwrap();
    let claimed = q
        .claim_decoded(&c, "w", 10, |b| {
            std::str::from_utf8(b).unwrap().parse::<u64>()
        })
        .await
        .unwrap();
    let values: Vec<u64> = claimed.jobs.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, [17, 42]);
    assert_eq!(claimed.undecodable.len(), 1);
    assert_eq!(claimed.undecodable[0].0, ids[1]);
    let dead = q.dead_jobs(&c, 10).await.unwrap();
    assert_eq!(dead[0].job, ids[1]);
    assert_eq!(dead[0].payload, b"not a number");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("payload could not be decoded")
    );
    for (_, job) in &claimed.jobs {
        q.complete(&mut c, job.lease(), 1).await.unwrap();
    }
    let counts = q.counts(&c).await.unwrap();
    assert_eq!((counts.done, counts.dead, counts.queued), (2, 1, 0));
}

#[tokio::test]
async fn rate_limit_refuses_with_retry_time_that_is_honoured() {
    // 10 per second, burst 3: one unit every 100 ms.
    let quota = Quota::per_second(nz(10)).allow_burst(nz(3));
    let (q, mut c) = queue("rate", |c| c.with_default_quota(Some(quota))).await;
    q.enqueue_batch(&mut c, "acme", &jobs(3, "burst"))
        .await
        .unwrap();
    let err = q
        .enqueue(&mut c, "acme", &NewJob::new("over"))
        .await
        .unwrap_err();
    let Error::RateLimited {
        retry_after,
        retry_at,
        tenant,
    } = err
    else {
        panic!("expected RateLimited, got {err}");
    };
    assert_eq!(tenant, "acme");
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(100),
        "{retry_after:?}"
    );
    assert!(retry_at > SystemTime::now() - Duration::from_secs(5));
    // Other tenants have their own budget.
    q.enqueue_batch(&mut c, "globex", &jobs(3, "g"))
        .await
        .unwrap();
    // Waiting the stated time is enough.
    tokio::time::sleep(retry_after + Duration::from_millis(5)).await;
    q.enqueue(&mut c, "acme", &NewJob::new("now ok"))
        .await
        .unwrap();
    // A batch over the burst can never pass: a distinct error.
    let err = q
        .enqueue_batch(&mut c, "acme", &jobs(4, "big"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                cost: 4,
                max: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    // A per-tenant quota overrides the default; costs count.
    q.set_quota(
        &c,
        "vip",
        Some(Quota::per_second(nz(1000)).allow_burst(nz(100))),
    )
    .await
    .unwrap();
    q.enqueue_batch(&mut c, "vip", &jobs(100, "v"))
        .await
        .unwrap();
    let heavy = NewJob::new("h").with_cost(nz(50));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = q.enqueue(&mut c, "vip", &heavy).await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err}");
    assert_eq!(
        q.tenant(&c, "vip").await.unwrap().unwrap().quota,
        Some((1_000_000, 100))
    );
}

/// Regression (found by the `postgres` fuzz target): a quota whose window (interval times
/// burst) exceeds 2^64 ns, here one a year with a burst of 600, saturated in the check and let
/// every batch up to the burst pass, any number of times.
#[tokio::test]
async fn a_quota_with_a_window_beyond_64_bits_still_limits() {
    let yearly = Quota::with_period(Duration::from_secs(365 * 86_400))
        .unwrap()
        .allow_burst(nz(600));
    let (q, mut c) = queue("rate_yearly", |c| c).await;
    q.set_quota(&c, "trial", Some(yearly)).await.unwrap();
    q.enqueue_batch(&mut c, "trial", &jobs(100, "a"))
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "trial", &jobs(500, "b"))
        .await
        .unwrap();
    for n in [1, 600] {
        let err = q
            .enqueue_batch(&mut c, "trial", &jobs(n, "over"))
            .await
            .unwrap_err();
        let Error::RateLimited { retry_after, .. } = err else {
            panic!("a batch of {n} over the burst passed: {err}");
        };
        assert!(
            retry_after > Duration::from_secs(100 * 365 * 86_400),
            "{retry_after:?}"
        );
    }
    assert_eq!(q.counts(&c).await.unwrap().queued, 600);
}

/// Regression: durations were sent as microseconds up to `i64::MAX` (292,000 years), which
/// PostgreSQL's interval and timestamp arithmetic cannot take ("interval out of range"), so a
/// very long delay, backoff or lease failed the statement instead of meaning "not for ages".
#[tokio::test]
async fn huge_durations_mean_far_off_not_a_database_error() {
    let (q, mut c) = queue("huge_durations", |c| {
        c.with_backoff(Duration::MAX, Duration::MAX)
            .with_lease(Duration::from_secs(60))
    })
    .await;
    q.enqueue(
        &mut c,
        "acme",
        &NewJob::new("later").with_delay(Duration::MAX),
    )
    .await
    .unwrap();
    q.enqueue(&mut c, "acme", &NewJob::new("now"))
        .await
        .unwrap();
    let job = q.claim(&c, "w", 10).await.unwrap().remove(0);
    assert_eq!(job.payload(), b"now");
    let mut lease = job.lease().clone();
    q.extend_lease(&c, &mut lease, Duration::MAX).await.unwrap();
    assert!(lease.until() > SystemTime::now() + Duration::from_secs(100 * 365 * 86_400));
    match q.fail(&c, &lease, "boom").await.unwrap() {
        FailOutcome::Retrying { after, .. } => assert!(after > Duration::from_secs(86_400)),
        other => panic!("{other:?}"),
    }
    assert!(q.claim(&c, "w", 10).await.unwrap().is_empty());
    assert_eq!(q.prune_done(&c, Duration::MAX).await.unwrap(), 0);
    let counts = q.counts(&c).await.unwrap();
    assert_eq!((counts.queued, counts.running), (2, 0));
}

#[tokio::test]
async fn weight_change_shifts_the_share() {
    let (q, mut c) = queue("weight", |c| c).await;
    q.set_weight(&c, "heavy", nz(3)).await.unwrap();
    q.enqueue_batch(&mut c, "heavy", &jobs(300, "h"))
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "light", &jobs(300, "l"))
        .await
        .unwrap();
    let first: Vec<_> = q.claim(&c, "w", 100).await.unwrap();
    let heavy = first.iter().filter(|j| j.tenant() == "heavy").count();
    assert!(
        (74..=76).contains(&heavy),
        "weight 3 vs 1 should get 3/4 of claims, got {heavy}/100"
    );
    // Swap the weights at runtime: newly enqueued jobs follow the new weights.
    q.purge(&c, "heavy").await.unwrap();
    q.purge(&c, "light").await.unwrap();
    q.set_weight(&c, "heavy", nz(1)).await.unwrap();
    q.set_weight(&c, "light", nz(4)).await.unwrap();
    assert_eq!(q.tenant(&c, "light").await.unwrap().unwrap().weight, nz(4));
    q.enqueue_batch(&mut c, "heavy", &jobs(300, "h"))
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "light", &jobs(300, "l"))
        .await
        .unwrap();
    let next: Vec<_> = q.claim(&c, "w", 100).await.unwrap();
    let light = next.iter().filter(|j| j.tenant() == "light").count();
    assert!(
        (79..=81).contains(&light),
        "weight 4 vs 1 should get 4/5 of claims, got {light}/100"
    );
}

#[tokio::test]
async fn actual_cost_corrects_the_tenants_next_passes() {
    let (q, mut c) = queue("correct", |c| c).await;
    q.enqueue(&mut c, "liar", &NewJob::new("cheap?"))
        .await
        .unwrap();
    let job = q.claim(&c, "w", 1).await.unwrap().remove(0);
    let before = q.tenant(&c, "liar").await.unwrap().unwrap();
    q.complete(&mut c, job.lease(), 100).await.unwrap();
    let after = q.tenant(&c, "liar").await.unwrap().unwrap();
    assert!(
        after.carry > before.carry || after.pass > before.pass,
        "under-declared cost must be charged: {before:?} -> {after:?}"
    );
    // The liar's next job now waits behind an honest tenant's next several jobs.
    q.enqueue_batch(&mut c, "honest", &jobs(20, "h"))
        .await
        .unwrap();
    q.enqueue(&mut c, "liar", &NewJob::new("next"))
        .await
        .unwrap();
    let order = claim_all(&q, &c).await;
    let liar_pos = order.iter().position(|j| j.tenant() == "liar").unwrap();
    assert!(
        liar_pos >= 20,
        "liar served at {liar_pos}, before its debt was paid"
    );
}

#[tokio::test]
async fn huge_weights_and_costs_do_not_fail() {
    let (q, mut c) = queue("huge", |c| c).await;
    q.set_weight(&c, "whale", NonZeroU32::MAX).await.unwrap();
    let big = NewJob::new("b").with_cost(NonZeroU32::MAX);
    q.enqueue_batch(&mut c, "whale", &[big.clone(), big.clone()])
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "tiny", &[big.clone(), big])
        .await
        .unwrap();
    let all = claim_all(&q, &c).await;
    assert_eq!(all.len(), 4);
    for j in &all {
        q.complete(&mut c, j.lease(), u32::MAX).await.unwrap();
    }
    q.complete(&mut c, all[0].lease(), 0).await.unwrap_err();
}

#[tokio::test]
async fn dashboards_show_backlog_oldest_pass_and_leases() {
    let (q, mut c) = queue("dash", |c| c).await;
    assert_eq!(q.oldest_pass(&c).await.unwrap(), None);
    q.enqueue_batch(&mut c, "acme", &jobs(5, "a"))
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "globex", &jobs(2, "g"))
        .await
        .unwrap();
    let job = q.claim(&c, "w-7", 1).await.unwrap().remove(0);
    let backlog = q.backlog(&c).await.unwrap();
    assert_eq!(backlog.len(), 2);
    assert_eq!(
        (
            backlog[0].tenant.as_str(),
            backlog[0].queued,
            backlog[0].running
        ),
        ("acme", 4, 1)
    );
    assert_eq!(
        (
            backlog[1].tenant.as_str(),
            backlog[1].queued,
            backlog[1].queued_cost
        ),
        ("globex", 2, 2)
    );
    let oldest = q.oldest_pass(&c).await.unwrap().unwrap();
    assert!(oldest >= job.pass());
    assert_eq!(
        Some(oldest),
        backlog.iter().filter_map(|b| b.oldest_pass).min()
    );
    let leases = q.in_flight(&c).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (
            leases[0].job,
            leases[0].worker.as_deref(),
            leases[0].expired
        ),
        (job.id(), Some("w-7"), false)
    );
}

#[tokio::test]
async fn release_gives_the_job_back_without_an_attempt() {
    let (q, mut c) = queue("release", |c| c).await;
    q.enqueue(&mut c, "acme", &NewJob::new("x")).await.unwrap();
    let job = q.claim(&c, "w", 1).await.unwrap().remove(0);
    q.release(&c, job.lease()).await.unwrap();
    let again = q.claim(&c, "w", 1).await.unwrap().remove(0);
    assert_eq!((again.id(), again.lease().attempt()), (job.id(), 1));
}

#[tokio::test]
async fn idle_tenant_banks_no_credit() {
    let (q, mut c) = queue("idle", |c| c).await;
    // "old" is served a lot, then goes idle while "busy" keeps the queue going.
    q.enqueue_batch(&mut c, "busy", &jobs(200, "b"))
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "old", &jobs(2, "o")).await.unwrap();
    let first = q.claim(&c, "w", 100).await.unwrap();
    assert_eq!(first.iter().filter(|j| j.tenant() == "old").count(), 2);
    // A newcomer and the returning tenant now each get one turn per round, not a burst.
    q.enqueue_batch(&mut c, "old", &jobs(50, "o2"))
        .await
        .unwrap();
    let next = q.claim(&c, "w", 20).await.unwrap();
    let old = next.iter().filter(|j| j.tenant() == "old").count();
    assert!((9..=11).contains(&old), "returning tenant got {old} of 20");
}

#[tokio::test]
async fn reap_requeues_expired_leases_keeping_their_place() {
    // A long reap interval: claims do not reap by themselves here, the host does.
    let (q, mut c) = queue("reap", |c| {
        c.with_lease(Duration::from_millis(200))
            .with_reap_interval(Duration::from_secs(3600))
    })
    .await;
    let ids = q
        .enqueue_batch(&mut c, "acme", &jobs(3, "r"))
        .await
        .unwrap();
    let first = q.claim(&c, "dies", 1).await.unwrap().remove(0);
    assert_eq!(first.id(), ids[0]);
    assert_eq!(q.reap_expired(&c).await.unwrap(), Reaped::default()); // lease holds
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(q.in_flight(&c).await.unwrap()[0].expired);
    let reaped = q.reap_expired(&c).await.unwrap();
    assert_eq!((reaped.requeued, reaped.dead), (1, 0));
    // Back at the front (its pass), and its history says what happened.
    let again = q.claim(&c, "w2", 1).await.unwrap().remove(0);
    assert_eq!((again.id(), again.lease().attempt()), (ids[0], 2));
    assert_eq!(
        again.last_error(),
        Some("lease of worker dies expired on attempt 1 of 5")
    );
    // The old holder is told its lease expired, before and after the takeover.
    assert!(matches!(
        q.fail(&c, first.lease(), "late").await,
        Err(Error::LeaseTakenOver { .. })
    ));
}

#[tokio::test]
async fn session_prepared_path_behaves_like_the_queue() {
    let (q, mut c) = queue("session", |c| {
        c.with_lease(Duration::from_millis(300))
            .with_backoff(Duration::from_millis(1), Duration::from_millis(1))
            .with_max_attempts(nz(2))
    })
    .await;
    let mut s = Session::new(q.clone(), client().await, "sess")
        .await
        .unwrap();
    assert_eq!(s.worker(), "sess");
    let ids = s.enqueue_batch("acme", &jobs(3, "s")).await.unwrap();
    // Non-uniform batch (different costs) through the prepared per-job statement.
    let mixed = vec![NewJob::new("m1").with_cost(nz(2)), NewJob::new("m2")];
    let mixed_ids = s.enqueue_batch("globex", &mixed).await.unwrap();
    q.enqueue(&mut c, "acme", &NewJob::new("via queue"))
        .await
        .unwrap();
    let got = s.claim(10).await.unwrap();
    assert_eq!(got.len(), 6);
    assert!(
        got.windows(2)
            .all(|w| (w[0].pass(), w[0].id()) < (w[1].pass(), w[1].id()))
    );
    let by_id: HashMap<_, _> = got.iter().map(|j| (j.id(), j)).collect();
    s.complete(by_id[&ids[0]].lease(), 1).await.unwrap();
    s.complete(by_id[&ids[1]].lease(), 7).await.unwrap(); // corrected cost
    assert!(matches!(
        s.fail(by_id[&ids[2]].lease(), "x").await.unwrap(),
        FailOutcome::Retrying { .. }
    ));
    s.dead_letter(by_id[&mixed_ids[0]].lease(), "bad")
        .await
        .unwrap();
    s.release(by_id[&mixed_ids[1]].lease()).await.unwrap();
    let (_, mut lease) = got
        .iter()
        .find(|j| j.payload() == b"via queue")
        .unwrap()
        .clone()
        .into_parts();
    s.extend_lease(&mut lease, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        s.complete(by_id[&ids[0]].lease(), 1).await,
        Err(Error::AlreadyFinished { .. })
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let decoded = s
        .claim_decoded(10, |b| {
            if b == b"s-2" {
                Err("no")
            } else {
                Ok(b.to_vec())
            }
        })
        .await
        .unwrap();
    assert_eq!(decoded.jobs.len(), 1); // the released job
    assert_eq!(decoded.undecodable.len(), 1); // the retried one does not decode
    s.complete(&lease, 1).await.unwrap();
    assert_eq!(s.reap_expired().await.unwrap(), Reaped::default());
    let counts = q.counts(s.client()).await.unwrap();
    assert_eq!((counts.done, counts.dead, counts.running), (3, 2, 1));
    drop(s.into_client());
}

#[tokio::test]
async fn delayed_job_waits_its_delay() {
    let (q, mut c) = queue("delay", |c| c).await;
    let late = q
        .enqueue(
            &mut c,
            "acme",
            &NewJob::new("later").with_delay(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    q.enqueue_batch(&mut c, "globex", &jobs(2, "g"))
        .await
        .unwrap();
    let now: Vec<_> = q.claim(&c, "w", 10).await.unwrap();
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|j| j.tenant() == "globex"));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let got = q.claim(&c, "w", 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id(), late);
}

#[tokio::test]
async fn prune_done_and_quota_reset() {
    let quota = Quota::per_second(nz(1)).allow_burst(nz(1));
    let (q, mut c) = queue("prune", |c| c).await;
    q.set_quota(&c, "acme", Some(quota)).await.unwrap();
    q.enqueue(&mut c, "acme", &NewJob::new("one"))
        .await
        .unwrap();
    assert!(matches!(
        q.enqueue(&mut c, "acme", &NewJob::new("two")).await,
        Err(Error::RateLimited { .. })
    ));
    // Back to the queue's default (no limit).
    q.set_quota(&c, "acme", None).await.unwrap();
    assert_eq!(q.tenant(&c, "acme").await.unwrap().unwrap().quota, None);
    q.enqueue(&mut c, "acme", &NewJob::new("two"))
        .await
        .unwrap();
    for j in claim_all(&q, &c).await {
        q.complete(&mut c, j.lease(), 1).await.unwrap();
    }
    assert_eq!(
        q.prune_done(&c, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        q.prune_done(&c, Duration::from_millis(10)).await.unwrap(),
        2
    );
    assert_eq!(q.counts(&c).await.unwrap(), Default::default());
}

#[tokio::test]
async fn invalid_schema_names_are_refused() {
    for bad in [
        "",
        "Upper",
        "9lives",
        "semi;colon",
        "quote\"d",
        &"x".repeat(64),
    ] {
        assert!(
            matches!(
                fairshare_postgres::QueueConfig::new(bad),
                Err(Error::InvalidSchemaName { .. })
            ),
            "{bad:?}"
        );
    }
    // A reserved word is fine: every statement quotes the name.
    let (q, mut c) = queue("select", |c| c).await;
    let q2 = Queue::new(fairshare_postgres::QueueConfig::new("select").unwrap());
    q2.migrate(&mut c).await.unwrap();
    q2.enqueue(&mut c, "acme", &NewJob::new("x")).await.unwrap();
    assert_eq!(q2.claim(&c, "w", 1).await.unwrap().len(), 1);
    assert_eq!(q.counts(&c).await.unwrap().queued, 0);
}
