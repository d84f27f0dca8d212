//! The suite's plan and report, without any I/O: which steps run in which order, the sizes, each
//! result against its target, the table and the JSON object.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::args::{BenchSuiteArgs, SuiteRow};

/// One measurement of the suite; a row has one or two (T4: native and HTTP, T5: RF 1 and RF 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    T5Rf1,
    T2,
    T1,
    T4Native,
    T4Http,
    T7,
    T5Rf3,
    T3,
    T6,
}

/// Which nodes a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    /// One node, started first and kept for T5 (RF 1), T2, T1, T4 and T7 (which restarts it).
    Single,
    /// Three nodes a, b, c, for T5 (RF 3) and T3.
    Cluster,
    /// A fresh node of its own, for T6.
    Idle,
}

/// Every step in the order the suite runs them: the single node's (the rows with latency targets,
/// T5 and T2, first, on a node no bulk load has just written to; T4 and T7 right after T1, whose
/// records they need), then the cluster's (T5 RF 3 before T3), then T6's idle node.
const ORDER: [Step; 9] = [
    Step::T5Rf1,
    Step::T2,
    Step::T1,
    Step::T4Native,
    Step::T4Http,
    Step::T7,
    Step::T5Rf3,
    Step::T3,
    Step::T6,
];

impl Step {
    pub fn row(self) -> SuiteRow {
        match self {
            Step::T1 => SuiteRow::T1,
            Step::T2 => SuiteRow::T2,
            Step::T3 => SuiteRow::T3,
            Step::T4Native | Step::T4Http => SuiteRow::T4,
            Step::T5Rf1 | Step::T5Rf3 => SuiteRow::T5,
            Step::T6 => SuiteRow::T6,
            Step::T7 => SuiteRow::T7,
        }
    }

    /// Its key in the JSON object and its label in the table.
    pub fn key(self) -> &'static str {
        match self {
            Step::T1 => "T1",
            Step::T2 => "T2",
            Step::T3 => "T3",
            Step::T4Native => "T4",
            Step::T4Http => "T4_http",
            Step::T5Rf1 => "T5",
            Step::T5Rf3 => "T5_rf3",
            Step::T6 => "T6",
            Step::T7 => "T7",
        }
    }

    pub fn nodes(self) -> Nodes {
        match self {
            Step::T3 | Step::T5Rf3 => Nodes::Cluster,
            Step::T6 => Nodes::Idle,
            _ => Nodes::Single,
        }
    }

    /// Whether it needs T1's records.
    pub fn needs_t1(self) -> bool {
        matches!(self, Step::T4Native | Step::T4Http | Step::T7)
    }

    /// What it measures, with the sizes of this run.
    pub fn description(self, s: &Sizes) -> String {
        match self {
            Step::T1 => format!(
                "native produce of {} records, batches of 1000, 4 producers, 4 partitions, 1 node, RF 1",
                grouped(s.t1_records)
            ),
            Step::T2 => format!(
                "HTTP produce of {} records, 100 per request, 16 connections, 4 partitions, 1 node",
                grouped(s.t2_records)
            ),
            Step::T3 => format!(
                "native produce of {} records, batches of 1000, 4 producers, 4 partitions, 3 nodes, RF 3",
                grouped(s.t3_records)
            ),
            Step::T4Native => format!(
                "native consume of T1's records from the start, {} per fetch",
                grouped(u64::from(CONSUME_BATCH))
            ),
            Step::T4Http => format!(
                "HTTP consume of T1's records from the start, {} per fetch",
                grouped(u64::from(CONSUME_BATCH))
            ),
            Step::T5Rf1 => format!(
                "HTTP, 1 record per request at 1,000 requests/s for {}, 16 connections, 1 partition, 1 node, RF 1",
                secs(s.t5_duration)
            ),
            Step::T5Rf3 => format!(
                "HTTP, 1 record per request at 1,000 requests/s for {}, 16 connections, 1 partition, 3 nodes, RF 3",
                secs(s.t5_duration)
            ),
            Step::T6 => format!(
                "{} idle partition replicas on 1 node, over {}",
                grouped(u64::from(s.t6_partitions)),
                secs(s.t6_idle)
            ),
            Step::T7 => format!(
                "restart after kill -9 of the node holding T1's {} records (and T2's, T5's), spawn to /readyz 200",
                grouped(s.t1_records)
            ),
        }
    }
}

/// Records per fetch of T4.
pub const CONSUME_BATCH: u32 = 5_000;

/// The sizes of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizes {
    pub t1_records: u64,
    pub t2_records: u64,
    pub t3_records: u64,
    pub t5_duration: Duration,
    pub t6_partitions: u32,
    pub t6_idle: Duration,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        t1_records: 10_000_000,
        t2_records: 2_000_000,
        t3_records: 2_000_000,
        t5_duration: Duration::from_secs(10),
        t6_partitions: 3_000,
        t6_idle: Duration::from_secs(10),
    };

    pub const QUICK: Sizes = Sizes {
        t1_records: 200_000,
        t2_records: 100_000,
        t3_records: 100_000,
        t5_duration: Duration::from_secs(2),
        t6_partitions: 200,
        t6_idle: Duration::from_secs(2),
    };

    /// `--quick` or the full sizes, then `--t1-records` and `--t5-duration` if given.
    pub fn of(args: &BenchSuiteArgs) -> Sizes {
        let base = if args.quick {
            Sizes::QUICK
        } else {
            Sizes::FULL
        };
        Sizes {
            t1_records: args.t1_records.unwrap_or(base.t1_records),
            t5_duration: args.t5_duration.unwrap_or(base.t5_duration),
            ..base
        }
    }
}

/// The steps of `rows` (all rows when `None`), in the order they run; T1 is added when T4 or T7
/// is asked for without it (the second value says so).
pub fn steps(rows: Option<&[SuiteRow]>) -> (Vec<Step>, bool) {
    let wanted = |r: SuiteRow| rows.is_none_or(|rows| rows.contains(&r));
    let mut chosen: Vec<Step> = ORDER.into_iter().filter(|s| wanted(s.row())).collect();
    let first_needing_t1 = chosen.iter().position(|s| s.needs_t1());
    let added = !wanted(SuiteRow::T1) && first_needing_t1.is_some();
    if let (true, Some(at)) = (added, first_needing_t1) {
        chosen.insert(at, Step::T1);
    }
    (chosen, added)
}

/// What one step gave: its results and parameters, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub step: Step,
    pub description: String,
    pub result: Result<Value, String>,
}

/// The result of a measurement against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The figures, for the table.
    pub result: String,
    pub target: &'static str,
    /// The parts of the target missed (empty: met).
    pub missed: Vec<&'static str>,
}

/// One part of a target: the field, at least (true) or at most (false) the bound, and its name.
type Check = (&'static str, bool, f64, &'static str);

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Each step's target, in words and as checks.
fn target(step: Step) -> (&'static str, &'static [Check]) {
    match step {
        Step::T1 => (
            ">= 1,000,000 rec/s",
            &[("records_per_sec", true, 1e6, "rec/s")],
        ),
        Step::T2 => (
            ">= 300,000 rec/s and p99 <= 20 ms",
            &[
                ("records_per_sec", true, 3e5, "rec/s"),
                ("p99_ms", false, 20.0, "p99"),
            ],
        ),
        Step::T3 => (
            ">= 300,000 rec/s",
            &[("records_per_sec", true, 3e5, "rec/s")],
        ),
        Step::T4Native => (
            ">= 2,500,000 rec/s",
            &[("records_per_sec", true, 2.5e6, "rec/s")],
        ),
        Step::T4Http => (
            ">= 500,000 rec/s",
            &[("records_per_sec", true, 5e5, "rec/s")],
        ),
        Step::T5Rf1 => ("p99 <= 2 ms", &[("p99_ms", false, 2.0, "p99")]),
        Step::T5Rf3 => ("p99 <= 5 ms", &[("p99_ms", false, 5.0, "p99")]),
        Step::T6 => (
            "CPU <= 15 % of one core and RSS <= 1 GiB",
            &[
                ("cpu_percent", false, 15.0, "CPU"),
                ("rss_bytes", false, GIB, "RSS"),
            ],
        ),
        Step::T7 => ("<= 5 s", &[("seconds", false, 5.0, "time")]),
    }
}

pub fn target_text(step: Step) -> &'static str {
    target(step).0
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `10s`, `1.5s`.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
}

/// The node's CPU and RSS, if measured: `node 109 % CPU, 150 MiB` (summed over a cluster's nodes).
fn node_usage(v: &Value) -> Option<String> {
    let cpu = num(v, "cpu_percent")?;
    let mut s = format!(
        "node{} {cpu:.0} % CPU",
        if num(v, "nodes") > Some(1.0) { "s" } else { "" }
    );
    if let Some(rss) = num(v, "rss_bytes") {
        s.push_str(&format!(", {}", mib(rss)));
    }
    Some(s)
}

/// A step's figures against its target.
pub fn verdict(step: Step, v: &Value) -> Verdict {
    let f = |key| num(v, key).unwrap_or(f64::NAN);
    let mut result = match step {
        Step::T1 | Step::T2 | Step::T3 | Step::T4Native | Step::T4Http => format!(
            "{} rec/s, {:.1} MB/s, p99 {:.1} ms",
            grouped(f("records_per_sec").max(0.0).round() as u64),
            f("mb_per_sec"),
            f("p99_ms"),
        ),
        Step::T5Rf1 | Step::T5Rf3 => format!(
            "p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ms",
            f("p50_ms"),
            f("p99_ms"),
            f("p999_ms"),
            f("max_ms"),
        ),
        Step::T6 => format!(
            "{:.1} % CPU, RSS {}",
            f("cpu_percent"),
            num(v, "rss_bytes").map_or("?".into(), mib)
        ),
        Step::T7 => format!("{:.2} s", f("seconds")),
    };
    if !matches!(step, Step::T6 | Step::T7) {
        if let Some(usage) = node_usage(v) {
            result.push_str("; ");
            result.push_str(&usage);
        }
    }
    let (target, checks) = target(step);
    let missed = checks
        .iter()
        .filter(|(key, at_least, bound, _)| match num(v, key) {
            Some(x) if *at_least => x < *bound,
            Some(x) => x > *bound,
            None => true,
        })
        .map(|c| c.3)
        .collect();
    Verdict {
        result,
        target,
        missed,
    }
}

/// The `met` column: `yes`, `no (p99)`, or `-` without a result.
fn met_text(verdict: Option<&Verdict>) -> String {
    match verdict {
        None => "-".into(),
        Some(v) if v.missed.is_empty() => "yes".into(),
        Some(v) => format!("no ({})", v.missed.join(", ")),
    }
}

/// The table of the run, as Markdown with aligned columns: row, workload, result, target, met.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut lines: Vec<[String; 5]> = vec![[
        "row".into(),
        "workload".into(),
        "result".into(),
        "target".into(),
        "met".into(),
    ]];
    for o in outcomes {
        let (result, met) = match &o.result {
            Ok(v) => {
                let verdict = verdict(o.step, v);
                (verdict.result.clone(), met_text(Some(&verdict)))
            }
            Err(e) => (
                format!("error: {}", e.lines().next().unwrap_or_default()),
                met_text(None),
            ),
        };
        lines.push([
            o.step.key().into(),
            o.description.clone(),
            result,
            target_text(o.step).into(),
            met,
        ]);
    }
    let mut widths = [0; 5];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let row = |cells: &[String]| -> String {
        let mut s = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            s.push_str(&format!(" {cell:<w$} |"));
        }
        s.push('\n');
        s
    };
    let mut out = row(&lines[0]);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&row(&rule));
    for line in &lines[1..] {
        out.push_str(&row(line));
    }
    out
}

/// The JSON object of the run: a key per step ([`Step::key`]) holding its figures and
/// parameters, with `description`, `target` and `met`; a step that failed holds `description`,
/// `target` and `error`.
pub fn json(outcomes: &[Outcome]) -> Value {
    let mut all = Map::new();
    for o in outcomes {
        let mut v = match &o.result {
            Ok(Value::Object(m)) => Value::Object(m.clone()),
            Ok(other) => serde_json::json!({ "value": other }),
            Err(e) => serde_json::json!({ "error": e }),
        };
        v["description"] = o.description.clone().into();
        v["target"] = target_text(o.step).into();
        if let Ok(figures) = &o.result {
            v["met"] = verdict(o.step, figures).missed.is_empty().into();
        }
        all.insert(o.step.key().to_owned(), v);
    }
    Value::Object(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        suite: BenchSuiteArgs,
    }

    fn suite(args: &[&str]) -> Result<BenchSuiteArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("suite").chain(args.iter().copied())).map(|c| c.suite)
    }

    #[test]
    fn rows_parse_in_any_case_and_reject_the_unknown() {
        let a = suite(&["--rows", "T1,t4, T7"]).expect("parses");
        assert_eq!(a.rows, Some(vec![SuiteRow::T1, SuiteRow::T4, SuiteRow::T7]));
        let a = suite(&["--rows", "T5", "--rows", "T2"]).expect("parses");
        assert_eq!(a.rows, Some(vec![SuiteRow::T5, SuiteRow::T2]));
        assert_eq!(suite(&[]).expect("parses").rows, None);
        for bad in ["T8", "T0", "", "T1,,T2", "1", "T1;T2", "all"] {
            let e = suite(&["--rows", bad]).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        for bad in [
            &["--t1-records", "0"][..],
            &["--t5-duration", "0s"],
            &["--t5-duration", "soon"],
        ] {
            assert_eq!(suite(bad).expect_err("bad").exit_code(), 2, "{bad:?}");
        }
        assert_eq!("t3".parse::<SuiteRow>(), Ok(SuiteRow::T3));
        assert_eq!(SuiteRow::T6.to_string(), "T6");
    }

    #[test]
    fn sizes_are_full_quick_or_given() {
        let s = Sizes::of(&suite(&[]).expect("parses"));
        assert_eq!(s, Sizes::FULL);
        assert_eq!(s.t1_records, 10_000_000);
        assert_eq!(s.t5_duration, Duration::from_secs(10));
        assert_eq!(s.t6_partitions, 3_000);
        let q = Sizes::of(&suite(&["--quick"]).expect("parses"));
        assert_eq!(q, Sizes::QUICK);
        let q = Sizes::of(
            &suite(&["--quick", "--t1-records", "5000", "--t5-duration", "1500ms"])
                .expect("parses"),
        );
        assert_eq!(q.t1_records, 5_000);
        assert_eq!(q.t5_duration, Duration::from_millis(1500));
        assert_eq!(q.t6_partitions, Sizes::QUICK.t6_partitions);
    }

    fn keys(rows: Option<&[SuiteRow]>) -> (Vec<&'static str>, bool) {
        let (steps, added) = steps(rows);
        (steps.into_iter().map(Step::key).collect(), added)
    }

    #[test]
    fn steps_run_in_order_with_t1_first_when_needed() {
        use SuiteRow::*;
        assert_eq!(
            keys(None),
            (
                vec!["T5", "T2", "T1", "T4", "T4_http", "T7", "T5_rf3", "T3", "T6"],
                false
            )
        );
        // T4 and T7 need T1's records: T1 is added, right before the first of them (after T5 and
        // T2, which run on the node before any bulk load).
        assert_eq!(keys(Some(&[T7])), (vec!["T1", "T7"], true));
        assert_eq!(
            keys(Some(&[T7, T4, T6])),
            (vec!["T1", "T4", "T4_http", "T7", "T6"], true)
        );
        assert_eq!(
            keys(Some(&[T4, T5])),
            (vec!["T5", "T1", "T4", "T4_http", "T5_rf3"], true)
        );
        // Asked for, T1 is not "added"; the order is the suite's, not the command line's.
        assert_eq!(
            keys(Some(&[T6, T5, T4, T1])),
            (vec!["T5", "T1", "T4", "T4_http", "T5_rf3", "T6"], false)
        );
        assert_eq!(keys(Some(&[T3, T2])), (vec!["T2", "T3"], false));
        assert_eq!(keys(Some(&[T7, T2])), (vec!["T2", "T1", "T7"], true));
        assert_eq!(keys(Some(&[T3, T5])), (vec!["T5", "T5_rf3", "T3"], false));
        assert_eq!(keys(Some(&[T3, T3])), (vec!["T3"], false));
        // Steps are grouped by the nodes they need: the single node's, the cluster's, T6's.
        let (all, _) = steps(None);
        let groups: Vec<Nodes> = all.iter().map(|s| s.nodes()).collect();
        let mut deduped = groups.clone();
        deduped.dedup();
        assert_eq!(deduped, vec![Nodes::Single, Nodes::Cluster, Nodes::Idle]);
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(10_000_000), "10,000,000");
        assert_eq!(grouped(123_456_789), "123,456,789");
    }

    #[test]
    fn verdicts_check_every_part_of_a_target() {
        let v = json!({"records_per_sec": 1_200_000.4, "mb_per_sec": 120.0, "p99_ms": 11.44,
                       "cpu_percent": 109.2, "rss_bytes": 157_286_400, "nodes": 1});
        let t1 = verdict(Step::T1, &v);
        assert_eq!(
            t1.result,
            "1,200,000 rec/s, 120.0 MB/s, p99 11.4 ms; node 109 % CPU, 150 MiB"
        );
        assert_eq!(t1.target, ">= 1,000,000 rec/s");
        assert!(t1.missed.is_empty());
        // T2: the rate is met, the p99 is not.
        assert!(verdict(Step::T2, &v).missed.is_empty());
        let t2 = json!({"records_per_sec": 400_000.0, "p99_ms": 29.7});
        assert_eq!(verdict(Step::T2, &t2).missed, vec!["p99"]);
        let t2 = json!({"records_per_sec": 200_000.0, "p99_ms": 29.7});
        assert_eq!(verdict(Step::T2, &t2).missed, vec!["rec/s", "p99"]);
        assert_eq!(verdict(Step::T4Native, &v).missed, vec!["rec/s"]);
        assert!(verdict(Step::T4Http, &v).missed.is_empty());
        // A missing figure is a miss, not a pass.
        assert_eq!(verdict(Step::T5Rf1, &json!({})).missed, vec!["p99"]);
        let t5 = json!({"p50_ms": 0.5, "p99_ms": 4.2, "p999_ms": 6.0, "max_ms": 9.1,
                        "cpu_percent": 30.0, "nodes": 3});
        let rf1 = verdict(Step::T5Rf1, &t5);
        assert_eq!(
            rf1.result,
            "p50 0.50, p99 4.20, p99.9 6.00, max 9.10 ms; nodes 30 % CPU"
        );
        assert_eq!(rf1.missed, vec!["p99"]);
        assert!(verdict(Step::T5Rf3, &t5).missed.is_empty());
        let t6 = json!({"cpu_percent": 16.0, "rss_bytes": 2_147_483_648u64});
        let t6 = verdict(Step::T6, &t6);
        assert_eq!(t6.result, "16.0 % CPU, RSS 2048 MiB");
        assert_eq!(t6.missed, vec!["CPU", "RSS"]);
        let t7 = verdict(Step::T7, &json!({"seconds": 4.996}));
        assert_eq!((t7.result.as_str(), t7.missed.len()), ("5.00 s", 0));
        assert_eq!(
            verdict(Step::T7, &json!({"seconds": 5.2})).missed,
            vec!["time"]
        );
    }

    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome {
                step: Step::T1,
                description: "native produce".into(),
                result: Ok(json!({"records_per_sec": 1_000_000.0, "mb_per_sec": 100.0,
                                  "p50_ms": 1.0, "p99_ms": 2.0})),
            },
            Outcome {
                step: Step::T4Http,
                description: "HTTP consume".into(),
                result: Ok(json!({"records_per_sec": 400_000.0, "mb_per_sec": 40.0,
                                  "p99_ms": 3.0})),
            },
            Outcome {
                step: Step::T7,
                description: "restart".into(),
                result: Err("node solo: exited (signal: 9)\nlog".into()),
            },
        ]
    }

    #[test]
    fn the_table_aligns_every_row() {
        // Markdown, padded to the widest cell; an error shows its first line and no verdict.
        let expected = "\
| row     | workload       | result                                  | target             | met        |
| ------- | -------------- | --------------------------------------- | ------------------ | ---------- |
| T1      | native produce | 1,000,000 rec/s, 100.0 MB/s, p99 2.0 ms | >= 1,000,000 rec/s | yes        |
| T4_http | HTTP consume   | 400,000 rec/s, 40.0 MB/s, p99 3.0 ms    | >= 500,000 rec/s   | no (rec/s) |
| T7      | restart        | error: node solo: exited (signal: 9)    | <= 5 s             | -          |
";
        assert_eq!(table(&outcomes()), expected);
        assert_eq!(table(&[]).lines().count(), 2);
    }

    #[test]
    fn json_has_a_key_per_step_with_its_verdict() {
        let v = json(&outcomes());
        let keys: Vec<&String> = v.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["T1", "T4_http", "T7"]);
        assert_eq!(v["T1"]["records_per_sec"], 1_000_000.0);
        assert_eq!(v["T1"]["met"], true);
        assert_eq!(v["T1"]["target"], ">= 1,000,000 rec/s");
        assert_eq!(v["T1"]["description"], "native produce");
        assert_eq!(v["T4_http"]["met"], false);
        assert_eq!(v["T7"]["error"], "node solo: exited (signal: 9)\nlog");
        assert_eq!(v["T7"]["target"], "<= 5 s");
        assert!(v["T7"].get("met").is_none());
    }
}
