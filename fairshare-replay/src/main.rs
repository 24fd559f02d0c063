//! `fairshare-replay`: replays a trace through FIFO and through fairshare, prints the waits,
//! writes a chart. Run with no arguments for usage.

// The workspace's clippy.toml bans printing for the no-IO core; printing is this binary's job.
#![allow(clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fairshare_replay::{Format, Replay, SAMPLE_CONFIG, SampleSpec, Setup, Trace, chart_svg};

const USAGE: &str = "\
fairshare-replay: what fairshare would have done with your traffic, against your FIFO

USAGE:
  fairshare-replay demo [--out DIR] [--top N]
      Generates the sample incident trace into DIR (default: the system temp dir's
      fairshare-replay-demo/), replays it with the shipped sample config and writes the chart.
  fairshare-replay run --trace FILE --config FILE [--workers N] [--format csv|jsonl]
                       [--svg FILE] [--top N]
      Replays your trace (CSV or JSON lines, told by the extension unless --format says) with
      your fairshare config (the core crate's JSON file form). Workers: --workers, else the
      config's max_in_flight. The chart goes to --svg (default: beside the trace, .svg).
  fairshare-replay generate --out FILE [--small] [--seed N]
      Writes the sample incident trace (CSV or JSON lines by the extension); --small is the
      scaled-down one the tests use.

  --top N   tenants shown in the per-tenant table before the 'others' row (default 10)
";

/// A usage or data error, printed to stderr.
struct Failure {
    message: String,
    usage: bool,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        usage: true,
    }
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        message: e.to_string(),
        usage: false,
    }
}

/// The flags after the subcommand, as `--name value` pairs (and bare `--small`).
struct Flags(Vec<(String, Option<String>)>);

impl Flags {
    fn parse(args: &[String], allowed: &[&str], bare: &[&str]) -> Result<Flags, Failure> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| usage(format!("unexpected argument `{a}`")))?;
            if bare.contains(&name) {
                out.push((name.to_string(), None));
            } else if allowed.contains(&name) {
                let value = it
                    .next()
                    .ok_or_else(|| usage(format!("--{name} needs a value")))?;
                out.push((name.to_string(), Some(value.clone())));
            } else {
                return Err(usage(format!("unknown flag --{name}")));
            }
        }
        Ok(Flags(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Failure> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| usage(format!("--{name} must be a whole number, not `{v}`")))
            })
            .transpose()
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(fail(format!("writing to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| fail(format!("writing {}: {e}", path.display())))
}

/// Replays, prints the report, writes the chart.
fn replay_and_report(trace: Trace, setup: &Setup, svg: &Path, top: usize) -> Result<(), Failure> {
    let replay = Replay::run(trace, setup).map_err(fail)?;
    emit(&replay.report(top))?;
    let chart = chart_svg(&replay).map_err(fail)?;
    write_file(svg, chart.as_bytes())?;
    emit(&format!("Chart: {}\n", svg.display()))?;
    Ok(())
}

fn format_of(path: &Path) -> Result<Format, Failure> {
    Format::from_path(path)
        .ok_or_else(|| usage(format!("{}: name the file .csv or .jsonl", path.display())))
}

fn demo(flags: &Flags) -> Result<(), Failure> {
    let dir = flags
        .get("out")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("fairshare-replay-demo"));
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let trace_path = dir.join("incident.csv");
    let config_path = dir.join("config.json");
    let spec = SampleSpec::incident();
    let mut csv = Vec::new();
    spec.generate().write(&mut csv, Format::Csv).map_err(fail)?;
    write_file(&trace_path, &csv)?;
    write_file(&config_path, SAMPLE_CONFIG.as_bytes())?;
    emit(&format!(
        "Sample trace: {} (tenant {} submits {} jobs in a burst); config: {}\n\n",
        trace_path.display(),
        spec.flood_tenant,
        spec.flood_jobs,
        config_path.display()
    ))?;
    // Read back what was written, as `run` would.
    let trace = Trace::read_path(&trace_path, None).map_err(fail)?;
    let setup = Setup::from_path(&config_path, None).map_err(fail)?;
    let top = flags.number("top")?.unwrap_or(10);
    replay_and_report(trace, &setup, &dir.join("waits.svg"), top)
}

fn run(flags: &Flags) -> Result<(), Failure> {
    let trace_path = PathBuf::from(
        flags
            .get("trace")
            .ok_or_else(|| usage("run needs --trace FILE"))?,
    );
    let config_path = PathBuf::from(
        flags
            .get("config")
            .ok_or_else(|| usage("run needs --config FILE"))?,
    );
    let format = match flags.get("format") {
        None => None,
        Some(name) => Some(
            Format::from_name(name)
                .ok_or_else(|| usage(format!("--format is csv or jsonl, not `{name}`")))?,
        ),
    };
    let trace = Trace::read_path(&trace_path, format)
        .map_err(|e| fail(format!("{}: {e}", trace_path.display())))?;
    let setup = Setup::from_path(&config_path, flags.number("workers")?).map_err(fail)?;
    let svg = flags
        .get("svg")
        .map(PathBuf::from)
        .unwrap_or_else(|| trace_path.with_extension("svg"));
    replay_and_report(trace, &setup, &svg, flags.number("top")?.unwrap_or(10))
}

fn generate(flags: &Flags) -> Result<(), Failure> {
    let out = PathBuf::from(
        flags
            .get("out")
            .ok_or_else(|| usage("generate needs --out FILE"))?,
    );
    let format = format_of(&out)?;
    let mut spec = if flags.has("small") {
        SampleSpec::small()
    } else {
        SampleSpec::incident()
    };
    if let Some(seed) = flags.number("seed")? {
        spec.seed = seed;
    }
    let trace = spec.generate();
    let file = std::fs::File::create(&out)
        .map_err(|e| fail(format!("creating {}: {e}", out.display())))?;
    trace.write(file, format).map_err(fail)?;
    emit(&format!("{}: {} jobs\n", out.display(), trace.rows().len()))?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => Flags::parse(&args[1..], &["out", "top"], &[]).and_then(|f| demo(&f)),
        Some("run") => Flags::parse(
            &args[1..],
            &["trace", "config", "workers", "format", "svg", "top"],
            &[],
        )
        .and_then(|f| run(&f)),
        Some("generate") => {
            Flags::parse(&args[1..], &["out", "seed"], &["small"]).and_then(|f| generate(&f))
        }
        Some("help" | "--help" | "-h") => {
            let _ = emit(USAGE);
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(usage(format!("unknown command `{other}`"))),
        None => Err(usage("no command given")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("fairshare-replay: {}", f.message);
            if f.usage {
                eprint!("\n{USAGE}");
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
