//! Bad input is refused with an error that names the line and the problem, never replayed
//! half-way.

#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

use fairshare_replay::{Format, Replay, SAMPLE_CONFIG, Setup, SetupError, Trace, TraceError};

const HEADER: &str = "arrival_ms,tenant,group,class,cost,service_ms\n";
const GOOD: &str = "0,acme,pro,jobs,1,200\n";

fn csv_error(body: &str) -> TraceError {
    let text = format!("{HEADER}{GOOD}{body}");
    Trace::read(text.as_bytes(), Format::Csv).expect_err("the trace is bad")
}

fn jsonl_error(body: &str) -> TraceError {
    let good = r#"{"arrival_ms":0,"tenant":"acme","group":"pro","class":"jobs","cost":1,"service_ms":200}"#;
    let text = format!("{good}\n{body}\n");
    Trace::read(text.as_bytes(), Format::JsonLines).expect_err("the trace is bad")
}

/// The error's line and message; panics unless it is a row error.
fn row_error(e: TraceError) -> (u64, String) {
    let message = e.to_string();
    match e {
        TraceError::Row { line, .. } => (line, message),
        other => panic!("expected a row error, got {other:?}"),
    }
}

#[test]
fn malformed_csv_row_names_its_line() {
    // Line 1 is the header, line 2 the good row: the bad one is line 3.
    let (line, message) = row_error(csv_error("5,globex,pro,jobs,lots,200\n"));
    assert_eq!(line, 3);
    assert!(message.starts_with("line 3: "), "{message}");
    assert!(message.contains("cost is `lots`"), "{message}");
}

#[test]
fn csv_row_with_missing_fields_names_its_line() {
    let (line, message) = row_error(csv_error("5,globex,pro\n"));
    assert_eq!(line, 3);
    assert!(
        message.contains("3 fields, but the header has 6"),
        "{message}"
    );
}

#[test]
fn csv_header_without_a_field_is_refused() {
    let text = "arrival_ms,tenant,group,class,service_ms\n0,a,g,jobs,200\n";
    let (line, message) = row_error(Trace::read(text.as_bytes(), Format::Csv).unwrap_err());
    assert_eq!(line, 1);
    assert!(message.contains("no `cost` column"), "{message}");
}

#[test]
fn zero_and_negative_costs_are_refused_with_their_line() {
    for cost in ["0", "-3"] {
        let (line, message) = row_error(csv_error(&format!("5,globex,pro,jobs,{cost},200\n")));
        assert_eq!(line, 3);
        assert!(message.contains(&format!("cost is {cost}")), "{message}");
        assert!(
            message.contains("at least") || message.contains("from 1"),
            "{message}"
        );
    }
    let (line, message) = row_error(jsonl_error(
        r#"{"arrival_ms":5,"tenant":"g","group":"pro","class":"jobs","cost":0,"service_ms":200}"#,
    ));
    assert_eq!(line, 2);
    assert!(message.contains("cost is 0"), "{message}");
}

#[test]
fn negative_times_are_refused() {
    let (line, message) = row_error(csv_error("-5,globex,pro,jobs,1,200\n"));
    assert_eq!(line, 3);
    assert!(message.contains("arrival_ms is -5"), "{message}");
    let (line, message) = row_error(csv_error("5,globex,pro,jobs,1,-1\n"));
    assert_eq!(line, 3);
    assert!(message.contains("service_ms is -1"), "{message}");
}

#[test]
fn empty_names_are_refused() {
    let (line, message) = row_error(csv_error("5,,pro,jobs,1,200\n"));
    assert_eq!(line, 3);
    assert!(message.contains("tenant is empty"), "{message}");
}

#[test]
fn a_tenant_in_two_groups_is_refused() {
    let (line, message) = row_error(csv_error("5,acme,free,jobs,1,200\n"));
    assert_eq!(line, 3);
    assert!(
        message.contains("group `free` here but in group `pro` on line 2"),
        "{message}"
    );
}

#[test]
fn malformed_json_line_names_its_line() {
    let (line, message) = row_error(jsonl_error(r#"{"arrival_ms":5,"tenant":"g""#));
    assert_eq!(line, 2);
    assert!(message.starts_with("line 2: not a trace row"), "{message}");
    let (line, message) = row_error(jsonl_error(
        r#"{"arrival_ms":5,"tenant":"g","group":"pro","class":"jobs","service_ms":200}"#,
    ));
    assert_eq!(line, 2);
    assert!(message.contains("missing field `cost`"), "{message}");
}

#[test]
fn unknown_class_names_its_first_line_and_the_known_classes() {
    let text = format!("{HEADER}{GOOD}5,globex,pro,batch,1,200\n6,globex,pro,batch,1,200\n");
    let trace = Trace::read(text.as_bytes(), Format::Csv).expect("the rows themselves are fine");
    let setup = Setup::from_json(SAMPLE_CONFIG, None).unwrap();
    let err = Replay::run(trace, &setup).expect_err("the config has no class `batch`");
    let message = err.to_string();
    assert!(
        message.starts_with("line 3: class `batch` is not in the config"),
        "{message}"
    );
    for class in &setup.config().classes {
        assert!(
            message.contains(&class.name),
            "{message} lists {}",
            class.name
        );
    }
}

#[test]
fn empty_trace_is_refused() {
    let err = Trace::read(HEADER.as_bytes(), Format::Csv).unwrap_err();
    assert!(matches!(err, TraceError::Empty));
}

#[test]
fn config_errors_are_clear() {
    let err = Setup::from_json("{}", None).unwrap_err();
    assert!(matches!(err, SetupError::NoWorkers));
    assert!(err.to_string().contains("--workers"));
    let err = Setup::from_json(r#"{ "max_in_flight": 4, "quantm": 1 }"#, None).unwrap_err();
    assert!(matches!(err, SetupError::Parse(_)));
    assert!(err.to_string().contains("quantm"), "{err}");
    let err = Setup::from_json(r#"{ "max_in_flight": 0 }"#, Some(4)).unwrap_err();
    assert!(err.to_string().contains("max_in_flight"), "{err}");
}
