//! Traces: one row per job, read from CSV or JSON lines, checked row by row.
//!
//! Every row has six fields (names as in the CSV header or the JSON object):
//!
//! | field | meaning |
//! | --- | --- |
//! | `arrival_ms` | when the job was submitted: whole milliseconds from any origin (0 or more) |
//! | `tenant` | who submitted it (the fairness key) |
//! | `group` | the tenant's group (one group per tenant) |
//! | `class` | the kind of work: a class name of the config (`default` if it names none) |
//! | `cost` | the scheduler's cost of the job: a whole number, at least 1 |
//! | `service_ms` | how long the job held a worker: whole milliseconds (0 or more) |
//!
//! Rows need not be sorted by arrival: the replay sorts them, keeping the file order among
//! equal arrival times. Extra CSV columns and extra JSON fields are ignored.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file form of a trace.
///
/// # Examples
///
/// ```
/// use fairshare_replay::Format;
/// assert_eq!(Format::from_path("trace.jsonl".as_ref()), Some(Format::JsonLines));
/// assert_eq!(Format::from_path("trace.csv".as_ref()), Some(Format::Csv));
/// assert_eq!(Format::from_path("trace.txt".as_ref()), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Comma-separated values with a header row naming the fields (any order).
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// The format a file name says: `.csv`, or `.jsonl` / `.ndjson` / `.json`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            _ => None,
        }
    }

    /// The format a `--format` value names: `csv` or `jsonl`.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The file could not be read.
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
    /// A row (or the CSV header, line 1) is malformed or has a value that can never work.
    #[error("line {line}: {problem}")]
    Row {
        /// The line of the file (1-based; a CSV file's header is line 1).
        line: u64,
        /// What is wrong and what a valid value looks like.
        problem: String,
    },
    /// A row names a class the config does not have.
    #[error("line {line}: class `{class}` is not in the config (its classes: {known})")]
    UnknownClass {
        /// The first line that names the class.
        line: u64,
        /// The class the row names.
        class: String,
        /// The config's classes, comma-separated.
        known: String,
    },
    /// The trace has no rows.
    #[error("the trace has no rows")]
    Empty,
}

/// One job of a trace, with its names interned: `tenant`, `group` and `class` index
/// [`Trace::tenant_name`], [`Trace::group_name`] and [`Trace::class_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Submission time, ms.
    pub arrival_ms: u64,
    /// Tenant index.
    pub tenant: u32,
    /// Group index (the tenant's group).
    pub group: u32,
    /// Class index (a class name of the trace; mapped to the config's classes at replay).
    pub class: u32,
    /// Cost, at least 1.
    pub cost: u32,
    /// Time on a worker, ms.
    pub service_ms: u64,
    /// The line of the file the row came from (for error messages).
    pub line: u64,
}

/// A whole trace, sorted by arrival time (stable: file order among equal times).
///
/// # Examples
///
/// ```
/// use fairshare_replay::{Format, Trace};
/// let csv = "arrival_ms,tenant,group,class,cost,service_ms\n\
///            5,globex,pro,default,1,200\n\
///            0,acme,pro,default,2,400\n";
/// let trace = Trace::read(csv.as_bytes(), Format::Csv).unwrap();
/// assert_eq!(trace.rows().len(), 2);
/// assert_eq!(trace.tenant_name(trace.rows()[0].tenant), "acme"); // sorted by arrival
/// assert_eq!(trace.rows()[0].line, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    rows: Vec<Row>,
    tenants: Vec<String>,
    groups: Vec<String>,
    classes: Vec<String>,
    /// The group of each tenant.
    tenant_group: Vec<u32>,
    /// The first line naming each class.
    class_first_line: Vec<u64>,
}

/// A row as written in a file, before its checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRow {
    arrival_ms: i64,
    tenant: String,
    group: String,
    class: String,
    cost: i64,
    service_ms: i64,
}

const FIELDS: [&str; 6] = [
    "arrival_ms",
    "tenant",
    "group",
    "class",
    "cost",
    "service_ms",
];

/// One row's fields as read, before the checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) arrival_ms: i64,
    pub(crate) tenant: &'a str,
    pub(crate) group: &'a str,
    pub(crate) class: &'a str,
    pub(crate) cost: i64,
    pub(crate) service_ms: i64,
}

/// Builds a [`Trace`] row by row, interning names and checking each row.
#[derive(Debug)]
pub(crate) struct TraceBuilder {
    trace: Trace,
    tenant_ids: HashMap<String, u32>,
    group_ids: HashMap<String, u32>,
    class_ids: HashMap<String, u32>,
    /// The first line of each tenant, for the error when its group changes.
    tenant_first_line: Vec<u64>,
}

fn intern(ids: &mut HashMap<String, u32>, names: &mut Vec<String>, name: &str) -> (u32, bool) {
    if let Some(&id) = ids.get(name) {
        return (id, false);
    }
    let id = u32::try_from(names.len()).expect("fewer than 2^32 distinct names in a trace");
    ids.insert(name.to_string(), id);
    names.push(name.to_string());
    (id, true)
}

impl Default for TraceBuilder {
    fn default() -> Self {
        TraceBuilder {
            trace: Trace {
                rows: Vec::new(),
                tenants: Vec::new(),
                groups: Vec::new(),
                classes: Vec::new(),
                tenant_group: Vec::new(),
                class_first_line: Vec::new(),
            },
            tenant_ids: HashMap::new(),
            group_ids: HashMap::new(),
            class_ids: HashMap::new(),
            tenant_first_line: Vec::new(),
        }
    }
}

impl TraceBuilder {
    /// Checks one row and adds it.
    pub(crate) fn push(&mut self, line: u64, fields: Fields<'_>) -> Result<(), TraceError> {
        let Fields {
            arrival_ms,
            tenant,
            group,
            class,
            cost,
            service_ms,
        } = fields;
        let bad = |problem: String| TraceError::Row { line, problem };
        let arrival_ms = u64::try_from(arrival_ms).map_err(|_| {
            bad(format!(
                "arrival_ms is {arrival_ms}: it must be 0 or more (ms from any origin)"
            ))
        })?;
        let service_ms = u64::try_from(service_ms).map_err(|_| {
            bad(format!(
                "service_ms is {service_ms}: it must be 0 or more (ms on a worker)"
            ))
        })?;
        let cost = u32::try_from(cost).ok().filter(|&c| c >= 1).ok_or_else(|| {
            bad(format!(
                "cost is {cost}: it must be a whole number from 1 to {} (a zero-cost job would be served forever)",
                u32::MAX
            ))
        })?;
        for (field, value) in [("tenant", tenant), ("group", group), ("class", class)] {
            if value.trim().is_empty() {
                return Err(bad(format!(
                    "{field} is empty: every row names its {field} (one name for all rows if you have no {field}s)"
                )));
            }
        }
        let t = &mut self.trace;
        let (tenant, new_tenant) = intern(&mut self.tenant_ids, &mut t.tenants, tenant);
        let (group, _) = intern(&mut self.group_ids, &mut t.groups, group);
        let (class, new_class) = intern(&mut self.class_ids, &mut t.classes, class);
        if new_class {
            t.class_first_line.push(line);
        }
        if new_tenant {
            t.tenant_group.push(group);
            self.tenant_first_line.push(line);
        } else if t.tenant_group[tenant as usize] != group {
            return Err(bad(format!(
                "tenant `{}` is in group `{}` here but in group `{}` on line {}: a tenant belongs to one group",
                t.tenants[tenant as usize],
                t.groups[group as usize],
                t.groups[t.tenant_group[tenant as usize] as usize],
                self.tenant_first_line[tenant as usize],
            )));
        }
        t.rows.push(Row {
            arrival_ms,
            tenant,
            group,
            class,
            cost,
            service_ms,
            line,
        });
        Ok(())
    }

    /// The trace, sorted by arrival.
    pub(crate) fn finish(mut self) -> Result<Trace, TraceError> {
        if self.trace.rows.is_empty() {
            return Err(TraceError::Empty);
        }
        self.trace.rows.sort_by_key(|r| r.arrival_ms);
        Ok(self.trace)
    }
}

impl Trace {
    /// Reads a trace from a file, in the format its extension says unless `format` is given.
    ///
    /// # Errors
    ///
    /// [`TraceError::Io`] if the file cannot be opened or read; [`TraceError::Row`] if the
    /// format is neither given nor told by the extension, and for a malformed row.
    pub fn read_path(path: &Path, format: Option<Format>) -> Result<Trace, TraceError> {
        let format = format.or_else(|| Format::from_path(path)).ok_or_else(|| TraceError::Row {
            line: 0,
            problem: format!(
                "{}: cannot tell the format from the extension; name the file .csv or .jsonl, or pass --format csv|jsonl",
                path.display()
            ),
        })?;
        let file = std::fs::File::open(path)?;
        Trace::read(std::io::BufReader::new(file), format)
    }

    /// Reads a trace in `format`.
    ///
    /// # Errors
    ///
    /// [`TraceError::Row`] with the line of the first malformed row: a missing or
    /// non-numeric field, a negative time, a cost below 1, an empty name, a tenant in two
    /// groups, a missing CSV header field. [`TraceError::Empty`] if there are no rows.
    pub fn read(reader: impl BufRead, format: Format) -> Result<Trace, TraceError> {
        match format {
            Format::Csv => read_csv(reader),
            Format::JsonLines => read_jsonl(reader),
        }
    }

    /// The jobs, sorted by arrival time.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Number of distinct tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Number of distinct groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Number of distinct classes.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The name of tenant `i`.
    pub fn tenant_name(&self, i: u32) -> &str {
        &self.tenants[i as usize]
    }

    /// The name of group `i`.
    pub fn group_name(&self, i: u32) -> &str {
        &self.groups[i as usize]
    }

    /// The name of class `i` (as the trace writes it).
    pub fn class_name(&self, i: u32) -> &str {
        &self.classes[i as usize]
    }

    /// The group of tenant `i`.
    pub fn group_of(&self, tenant: u32) -> u32 {
        self.tenant_group[tenant as usize]
    }

    /// The first line that names class `i`.
    pub fn class_first_line(&self, i: u32) -> u64 {
        self.class_first_line[i as usize]
    }

    /// Writes the trace in `format` (CSV with a header row), in arrival order.
    ///
    /// # Errors
    ///
    /// Any error of `out`.
    pub fn write(&self, out: impl Write, format: Format) -> std::io::Result<()> {
        match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                for row in &self.rows {
                    w.serialize(self.file_row(row))?;
                }
                w.flush()
            }
            Format::JsonLines => {
                let mut out = std::io::BufWriter::new(out);
                for row in &self.rows {
                    serde_json::to_writer(&mut out, &self.file_row(row))?;
                    out.write_all(b"\n")?;
                }
                out.flush()
            }
        }
    }

    fn file_row(&self, row: &Row) -> FileRow {
        FileRow {
            arrival_ms: i64::try_from(row.arrival_ms).unwrap_or(i64::MAX),
            tenant: self.tenant_name(row.tenant).to_string(),
            group: self.group_name(row.group).to_string(),
            class: self.class_name(row.class).to_string(),
            cost: i64::from(row.cost),
            service_ms: i64::try_from(row.service_ms).unwrap_or(i64::MAX),
        }
    }
}

fn read_csv(reader: impl BufRead) -> Result<Trace, TraceError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        match e.into_kind() {
            csv::ErrorKind::Io(io) => TraceError::Io(io),
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => TraceError::Row {
                line,
                problem: format!("{len} fields, but the header has {expected_len}"),
            },
            other => TraceError::Row {
                line,
                problem: format!("not valid CSV: {other:?}"),
            },
        }
    };
    let header = csv.headers().map_err(csv_error)?.clone();
    let mut index = [0usize; 6];
    for (slot, field) in index.iter_mut().zip(FIELDS) {
        *slot = header
            .iter()
            .position(|h| h == field)
            .ok_or_else(|| TraceError::Row {
                line: 1,
                problem: format!(
                    "the header has no `{field}` column (it needs {})",
                    FIELDS.join(",")
                ),
            })?;
    }
    let mut builder = TraceBuilder::default();
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(index[i]).unwrap_or("");
        let number = |i: usize| -> Result<i64, TraceError> {
            let text = field(i);
            text.parse::<i64>().map_err(|_| TraceError::Row {
                line,
                problem: format!("{} is `{text}`: it must be a whole number", FIELDS[i]),
            })
        };
        let fields = Fields {
            arrival_ms: number(0)?,
            tenant: field(1),
            group: field(2),
            class: field(3),
            cost: number(4)?,
            service_ms: number(5)?,
        };
        builder.push(line, fields)?;
    }
    builder.finish()
}

fn read_jsonl(reader: impl BufRead) -> Result<Trace, TraceError> {
    let mut builder = TraceBuilder::default();
    for (i, text) in reader.lines().enumerate() {
        let text = text?;
        let line = i as u64 + 1;
        if text.trim().is_empty() {
            continue;
        }
        let row: FileRow = serde_json::from_str(&text).map_err(|e| TraceError::Row {
            line,
            problem: format!(
                "not a trace row ({e}); a row is {{\"arrival_ms\":0,\"tenant\":\"t\",\"group\":\"g\",\"class\":\"default\",\"cost\":1,\"service_ms\":200}}"
            ),
        })?;
        let fields = Fields {
            arrival_ms: row.arrival_ms,
            tenant: &row.tenant,
            group: &row.group,
            class: &row.class,
            cost: row.cost,
            service_ms: row.service_ms,
        };
        builder.push(line, fields)?;
    }
    builder.finish()
}
