//! The replay's outcome on the scaled-down sample incident: what FIFO does to the other
//! tenants, what fairshare does instead, that the flood's own work completes, conservation,
//! and that the CSV and JSON-lines readers give the same replay.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use fairshare::{Limit, RejectReason};
use fairshare_replay::{Fate, Format, Replay, SAMPLE_CONFIG, SampleSpec, Setup, Trace, chart_svg};

fn setup() -> Setup {
    Setup::from_json(SAMPLE_CONFIG, None).expect("the shipped config is valid")
}

fn small_replay() -> Replay {
    Replay::run(SampleSpec::small().generate(), &setup()).expect("the sample replays")
}

/// The heaviest tenant's work in worker-ms per worker: how long the whole pool would take to
/// serve the flood alone, the scale of the FIFO backlog it causes.
fn flood_ms_per_worker(replay: &Replay) -> u64 {
    let heavy = replay.heaviest_tenant();
    let work: u64 = replay
        .trace()
        .rows()
        .iter()
        .filter(|r| r.tenant == heavy)
        .map(|r| r.service_ms)
        .sum();
    work / replay.workers() as u64
}

#[test]
fn flood_is_the_sample_flood() {
    let spec = SampleSpec::small();
    let replay = small_replay();
    let heavy = replay.heaviest_row();
    assert_eq!(heavy.name, spec.flood_tenant);
    assert_eq!(heavy.rows as u64, spec.flood_jobs);
}

#[test]
fn fifo_makes_other_tenants_wait_behind_the_flood() {
    let replay = small_replay();
    let others = replay.others_row();
    // Everyone behind the flood waits for a good part of the pool's time to serve it.
    let backlog = flood_ms_per_worker(&replay);
    assert!(
        others.fifo.p99 >= backlog / 2,
        "FIFO p99 {} ms, flood backlog {backlog} ms per worker",
        others.fifo.p99
    );
    // Sign-ins too: FIFO has no classes.
    let signin = replay
        .class_rows()
        .into_iter()
        .find(|r| r.name == "signin")
        .expect("the sample has sign-ins");
    assert!(signin.fifo.p99 >= backlog / 2);
}

#[test]
fn fairshare_keeps_other_tenants_waits_within_a_job() {
    let replay = small_replay();
    let others = replay.others_row();
    let longest_job = replay
        .trace()
        .rows()
        .iter()
        .map(|r| r.service_ms)
        .max()
        .unwrap();
    // A newcomer waits for a busy worker to finish, never behind the flood...
    assert!(
        others.fair.p99 <= longest_job,
        "fairshare p99 {} ms, longest job {longest_job} ms",
        others.fair.p99
    );
    // ...which is at least a hundred times less than under FIFO.
    assert!(
        others.fair.p99 * 100 <= others.fifo.p99,
        "fairshare p99 {} ms, FIFO p99 {} ms",
        others.fair.p99,
        others.fifo.p99
    );
    // And nothing of theirs is refused (the sample config's caps bind only the flood).
    assert_eq!(others.fair_not_served, 0);
    assert_eq!(others.fair.count, others.rows);
}

#[test]
fn flood_still_completes_under_fairshare() {
    let replay = small_replay();
    let heavy = replay.heaviest_row();
    assert_eq!(heavy.fair.count + heavy.fair_not_served, heavy.rows);
    assert_eq!(
        heavy.fair.count, heavy.rows,
        "no cap binds in the small sample"
    );
    // It pays for its own burst: it waits at least as long as under FIFO.
    assert!(heavy.fair.p99 >= heavy.fifo.p99);
}

#[test]
fn conservation_every_row_once() {
    let replay = small_replay();
    let rows = replay.trace().rows().len();
    assert_eq!(replay.fifo().served(), rows);
    let fair = replay.fair();
    assert_eq!(fair.served() + fair.refused() + fair.returned(), rows);
    // Per tenant the tables add up to the whole trace, too.
    let tenants = replay.tenant_rows();
    assert_eq!(tenants.iter().map(|t| t.rows).sum::<usize>(), rows);
    assert_eq!(
        tenants
            .iter()
            .map(|t| t.fair.count + t.fair_not_served)
            .sum::<usize>(),
        rows
    );
}

#[test]
fn refusals_are_counted_by_reason_and_the_admitted_flood_completes() {
    // A per-tenant queue cap at half the flood: the flood meets it, nobody else does.
    let spec = SampleSpec::small();
    let cap = spec.flood_jobs / 2;
    let mut config: serde_json::Value = serde_json::from_str(SAMPLE_CONFIG).unwrap();
    config["tenant_defaults"]["max_items"] = cap.into();
    let setup = Setup::from_json(&config.to_string(), None).unwrap();
    let replay = Replay::run(spec.generate(), &setup).unwrap();

    let heavy = replay.heaviest_tenant();
    let (mut refused, mut served) = (0, 0);
    for (row, fate) in replay.trace().rows().iter().zip(replay.fair().fates()) {
        match *fate {
            Fate::Refused(reason) => {
                assert_eq!(row.tenant, heavy, "only the flood meets the cap");
                assert_eq!(
                    reason,
                    RejectReason::TenantFull {
                        limit: Limit::Items(cap)
                    }
                );
                refused += 1;
            }
            Fate::Served { .. } if row.tenant == heavy => served += 1,
            Fate::Served { .. } => {}
            Fate::Returned(reason) => panic!("nothing is handed back here: {reason}"),
        }
    }
    assert!(refused > 0 && served >= cap as usize);
    assert_eq!(served + refused, spec.flood_jobs as usize);
    let table = replay.refusals();
    assert_eq!(table, vec![("refused", "tenant queue full", refused)]);
    assert!(replay.report(5).contains("tenant queue full"));
}

#[test]
fn replay_is_deterministic() {
    let spec = SampleSpec {
        flood_jobs: 5_000,
        horizon_ms: 15 * 60_000,
        ..SampleSpec::small()
    };
    assert_eq!(spec.generate(), spec.generate());
    let a = Replay::run(spec.generate(), &setup()).unwrap();
    let b = Replay::run(spec.generate(), &setup()).unwrap();
    assert_eq!(a.fifo(), b.fifo());
    assert_eq!(a.fair(), b.fair());
    assert_eq!(a.report(10), b.report(10));
    // A different seed is a different trace.
    let other = SampleSpec {
        seed: spec.seed + 1,
        ..spec.clone()
    };
    assert_ne!(other.generate(), spec.generate());
}

#[test]
fn csv_and_jsonl_readers_give_the_same_replay() {
    let spec = SampleSpec {
        flood_jobs: 5_000,
        horizon_ms: 15 * 60_000,
        ..SampleSpec::small()
    };
    let generated = spec.generate();
    let mut csv = Vec::new();
    let mut jsonl = Vec::new();
    generated.write(&mut csv, Format::Csv).unwrap();
    generated.write(&mut jsonl, Format::JsonLines).unwrap();
    let from_csv = Trace::read(csv.as_slice(), Format::Csv).unwrap();
    let from_jsonl = Trace::read(jsonl.as_slice(), Format::JsonLines).unwrap();
    // The generator numbers rows as in the CSV form (header on line 1).
    assert_eq!(from_csv, generated);
    // The same rows, but JSON lines have no header, so each is one line earlier.
    assert_eq!(from_csv.rows().len(), from_jsonl.rows().len());
    for (c, j) in from_csv.rows().iter().zip(from_jsonl.rows()) {
        assert_eq!(c.line, j.line + 1);
        assert_eq!(
            (c.arrival_ms, c.cost, c.service_ms),
            (j.arrival_ms, j.cost, j.service_ms)
        );
        assert_eq!(
            from_csv.tenant_name(c.tenant),
            from_jsonl.tenant_name(j.tenant)
        );
        assert_eq!(from_csv.group_name(c.group), from_jsonl.group_name(j.group));
        assert_eq!(from_csv.class_name(c.class), from_jsonl.class_name(j.class));
    }
    let a = Replay::run(from_csv, &setup()).unwrap();
    let b = Replay::run(from_jsonl, &setup()).unwrap();
    assert_eq!(a.fifo(), b.fifo());
    assert_eq!(a.fair(), b.fair());
    assert_eq!(a.report(10), b.report(10));
}

#[test]
fn shipped_example_traces_agree() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let csv = Trace::read_path(&dir.join("example.csv"), None).unwrap();
    let jsonl = Trace::read_path(&dir.join("example.jsonl"), None).unwrap();
    let a = Replay::run(csv, &setup()).unwrap();
    let b = Replay::run(jsonl, &setup()).unwrap();
    assert_eq!(a.fair(), b.fair());
    assert_eq!(a.fifo(), b.fifo());
}

#[test]
fn report_shows_top_tenants_then_others() {
    let replay = small_replay();
    let top = 3;
    let report = replay.report(top);
    let tenants = replay.trace().tenant_count();
    assert!(report.contains(&format!("others ({} tenants)", tenants - top)));
    // The heaviest tenant waits longest under fairshare, so it is listed first.
    let heavy = replay.heaviest_row().name;
    let table = report.split("Per tenant").nth(1).unwrap();
    let first_row = table.lines().nth(3).unwrap();
    assert!(first_row.starts_with(&heavy), "{first_row}");
    for group in 0..replay.trace().group_count() as u32 {
        assert!(report.contains(replay.trace().group_name(group)));
    }
    assert!(report.contains("Conservation"));
}

#[test]
fn chart_is_an_svg_with_its_labels() {
    let replay = small_replay();
    let svg = chart_svg(&replay).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    for label in ["FIFO", "fairshare", "p99 wait", &replay.heaviest_row().name] {
        assert!(svg.contains(label), "the chart names {label}");
    }
    // Text is SVG text the viewer renders: no glyphs drawn from a font file.
    assert!(svg.contains("<text"));
    // Two panels, each with a FIFO (red) and a fairshare (blue) line and their legend marks.
    for colour in ["#D62728", "#1F77B4"] {
        let lines = svg
            .match_indices("<polyline")
            .filter(|(at, _)| svg[*at..].split('>').next().unwrap().contains(colour))
            .count();
        assert_eq!(
            lines,
            2 + 2,
            "{colour}: a line and a legend mark in each panel"
        );
    }
}
