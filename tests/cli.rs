//! The `daftka` CLI client end to end: the real binary as a child process against a real
//! in-process node over HTTP.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, TestNode};

/// Runs `daftka --url URL ARGS...` with `stdin` piped in, off the async runtime.
async fn daftka(url: &str, args: &[&str], stdin: Vec<u8>) -> Output {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_daftka"))
            .arg("--url")
            .arg(&url)
            .args(&args)
            .env_remove("DAFTKA_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the daftka binary");
        let mut pipe = child.stdin.take().expect("stdin");
        // Written from another thread so a child that fills its stdout cannot deadlock us.
        let writer = std::thread::spawn(move || {
            pipe.write_all(&stdin).expect("write stdin");
        });
        let out = child.wait_with_output().expect("the child exits");
        writer.join().expect("stdin writer");
        out
    })
    .await
    .expect("the blocking task")
}

/// Runs a command that must succeed and returns its stdout.
async fn ok(url: &str, args: &[&str], stdin: Vec<u8>) -> String {
    let out = daftka(url, args, stdin).await;
    assert!(
        out.status.success(),
        "daftka {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// Asserts a command (given one line on stdin) fails with exit code 1 and `error: CODE` on
/// stderr, and prints nothing.
async fn fails(url: &str, args: &[&str], code: &str) {
    let out = daftka(url, args, b"x\n".to_vec()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "daftka {args:?}: {stderr}");
    assert!(
        stderr.starts_with(&format!("error: {code}")),
        "daftka {args:?}: stderr {stderr:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "daftka {args:?} printed {:?}",
        out.stdout
    );
}

/// Sorted lines of `text`.
fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip() {
    // topic create/list/describe/delete, produce from stdin, consume with and without a group,
    // and error reporting, all through the real binary against a real node.
    let node = TestNode::start("cli-").await;
    let url = node.url();
    let name = node.node.name.clone();

    // topic create prints nothing; list and describe print tab-separated lines.
    assert_eq!(
        ok(&url, &["topic", "create", "t", "--partitions", "2"], vec![]).await,
        ""
    );
    assert_eq!(ok(&url, &["topic", "list"], vec![]).await, "t\t2\t1\n");
    // The describe output names the node as leader once the partitions have elected it.
    let want = format!("0\t{name}\t{name}\t0\t0\n1\t{name}\t{name}\t0\t0\n");
    eventually(
        "describe to show the leaders",
        Duration::from_secs(10),
        async || {
            let got = ok(&url, &["topic", "describe", "t"], vec![]).await;
            (got == want).then_some(())
        },
    )
    .await;
    fails(
        &url,
        &["topic", "create", "t", "--partitions", "2"],
        "topic_exists",
    )
    .await;

    // produce: one record per stdin line, silent on success.
    let values: Vec<String> = (0..1000).map(|i| format!("value-{i:04}")).collect();
    let input = values.iter().map(|v| format!("{v}\n")).collect::<String>();
    assert_eq!(ok(&url, &["produce", "t"], input.into_bytes()).await, "");

    // consume prints every value once.
    let printed = ok(&url, &["consume", "t"], vec![]).await;
    let mut want_sorted = values.clone();
    want_sorted.sort();
    assert_eq!(sorted_lines(&printed), want_sorted);

    // --print-offsets: per partition, offsets 0.. without gaps, values in produced order.
    let printed = ok(&url, &["consume", "t", "--print-offsets"], vec![]).await;
    let mut by_partition: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for line in printed.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line:?}");
        assert_eq!(fields[2], "", "no key: {line:?}");
        let p: u32 = fields[0].parse().expect("partition");
        let o: u64 = fields[1].parse().expect("offset");
        by_partition
            .entry(p)
            .or_default()
            .push((o, fields[3].to_string()));
    }
    assert_eq!(
        by_partition.keys().copied().collect::<Vec<_>>(),
        vec![0, 1],
        "both partitions used"
    );
    let mut total = 0;
    let mut hwms = BTreeMap::new();
    for (p, recs) in &by_partition {
        let offs: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(
            offs,
            (0..recs.len() as u64).collect::<Vec<_>>(),
            "partition {p}"
        );
        let vals: Vec<&String> = recs.iter().map(|r| &r.1).collect();
        assert!(
            vals.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order: {vals:?}"
        );
        total += recs.len();
        hwms.insert(*p, recs.len() as u64);
    }
    assert_eq!(total, 1000);
    let described = ok(&url, &["topic", "describe", "t"], vec![]).await;
    let want = format!(
        "0\t{name}\t{name}\t0\t{}\n1\t{name}\t{name}\t0\t{}\n",
        hwms[&0], hwms[&1]
    );
    assert_eq!(described, want);

    // --group: prints everything, commits, and a second run prints nothing new.
    let printed = ok(&url, &["consume", "t", "--group", "g"], vec![]).await;
    assert_eq!(sorted_lines(&printed), want_sorted);
    let body: Value = reqwest::get(format!("{url}/v1/groups/g/offsets"))
        .await
        .expect("group offsets")
        .json()
        .await
        .expect("json");
    let mut committed: Vec<(u64, u64, u64)> = body["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            assert_eq!(o["topic"], "t", "{o}");
            (
                o["partition"].as_u64().expect("partition"),
                o["offset"].as_u64().expect("offset"),
                o["lag"].as_u64().expect("lag"),
            )
        })
        .collect();
    committed.sort_unstable();
    assert_eq!(committed, vec![(0, hwms[&0], 0), (1, hwms[&1], 0)]);
    assert_eq!(
        ok(&url, &["consume", "t", "--group", "g"], vec![]).await,
        ""
    );
    // New records after the commit are all the group sees next time.
    assert_eq!(
        ok(&url, &["produce", "t"], b"late-1\nlate-2\n".to_vec()).await,
        ""
    );
    let printed = ok(&url, &["consume", "t", "--group", "g"], vec![]).await;
    assert_eq!(sorted_lines(&printed), vec!["late-1", "late-2"]);

    // Errors: exit code 1 and `error: <code>` on stderr.
    fails(&url, &["consume", "missing"], "unknown_topic").await;
    fails(&url, &["produce", "missing"], "unknown_topic").await;
    fails(&url, &["topic", "describe", "missing"], "unknown_topic").await;

    // topic delete: gone from list and describe.
    assert_eq!(ok(&url, &["topic", "delete", "t"], vec![]).await, "");
    assert_eq!(ok(&url, &["topic", "list"], vec![]).await, "");
    fails(&url, &["topic", "describe", "t"], "unknown_topic").await;
    fails(&url, &["topic", "delete", "t"], "unknown_topic").await;
}

/// `GET url` as JSON.
async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("the node answers")
        .json()
        .await
        .expect("json")
}

/// Each partition's high watermark, by partition.
async fn high_watermarks(url: &str, topic: &str) -> BTreeMap<u64, u64> {
    let body = get_json(&format!("{url}/v1/topics/{topic}")).await;
    body["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["partition"].as_u64().expect("partition"),
                p["high_watermark"].as_u64().expect("high watermark"),
            )
        })
        .collect()
}

/// The group's committed offsets of `topic`, by partition.
async fn committed(url: &str, group: &str, topic: &str) -> BTreeMap<u64, u64> {
    let body = get_json(&format!("{url}/v1/groups/{group}/offsets")).await;
    body["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .filter(|o| o["topic"] == topic)
        .map(|o| {
            (
                o["partition"].as_u64().expect("partition"),
                o["offset"].as_u64().expect("offset"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_consumer_groups() {
    // `consume --group` as a group member (prints every record once, commits the high watermarks,
    // leaves), `group list|describe|reset`, and a following member ended by Ctrl-C, which leaves.
    let node = TestNode::start("cli-groups-").await;
    let url = node.url();
    assert_eq!(
        ok(
            &url,
            &["topic", "create", "orders", "--partitions", "3"],
            vec![]
        )
        .await,
        ""
    );
    eventually(
        "every partition to have a leader",
        Duration::from_secs(10),
        async || {
            let got = ok(&url, &["topic", "describe", "orders"], vec![]).await;
            let led =
                got.lines().count() == 3 && got.lines().all(|l| l.split('\t').nth(1) != Some("-"));
            led.then_some(())
        },
    )
    .await;
    let values: Vec<String> = (0..600).map(|i| format!("v-{i:04}")).collect();
    let input = values.iter().map(|v| format!("{v}\n")).collect::<String>();
    assert_eq!(
        ok(&url, &["produce", "orders"], input.into_bytes()).await,
        ""
    );
    let hwms = high_watermarks(&url, "orders").await;
    assert_eq!(hwms.len(), 3);
    assert_eq!(hwms.values().sum::<u64>(), 600);
    assert!(
        hwms.values().all(|h| *h > 0),
        "records on every partition: {hwms:?}"
    );

    // A member prints every record once, commits each partition's high watermark and leaves.
    let printed = ok(&url, &["consume", "orders", "--group", "g"], vec![]).await;
    assert_eq!(sorted_lines(&printed), values);
    assert_eq!(committed(&url, "g", "orders").await, hwms);
    assert_eq!(
        ok(&url, &["consume", "orders", "--group", "g"], vec![]).await,
        "",
        "nothing new for the group"
    );

    // list and describe: no members left, nothing to read.
    let listed = ok(&url, &["group", "list"], vec![]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with("g\t"))
        .unwrap_or_else(|| panic!("g is listed: {listed:?}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 4, "{line:?}");
    assert_eq!((fields[1], fields[3]), ("empty", "0"), "{line:?}");
    let described = ok(&url, &["group", "describe", "g"], vec![]).await;
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines[0], "group\tg", "{described}");
    assert!(lines.contains(&"state\tempty"), "{described}");
    assert!(lines.contains(&"members\t0"), "{described}");
    assert!(lines.contains(&"lag\t0"), "{described}");
    for (p, hwm) in &hwms {
        let want = format!("orders\t{p}\t{hwm}\t0\t{hwm}\t0\t-");
        assert!(lines.contains(&want.as_str()), "{want:?} in {described}");
    }
    fails(&url, &["group", "describe", "nobody"], "unknown_group").await;

    // reset to earliest: the next member reads everything again.
    assert_eq!(
        ok(
            &url,
            &["group", "reset", "g", "--topic", "orders", "--to", "earliest"],
            vec![]
        )
        .await,
        "orders\t0\t0\norders\t1\t0\norders\t2\t0\n"
    );
    let printed = ok(&url, &["consume", "orders", "--group", "g"], vec![]).await;
    assert_eq!(sorted_lines(&printed), values);
    assert_eq!(committed(&url, "g", "orders").await, hwms);

    // reset one partition to an offset: only its last record comes back, with --print-offsets.
    let last = hwms[&1] - 1;
    assert_eq!(
        ok(
            &url,
            &[
                "group",
                "reset",
                "g",
                "--topic",
                "orders",
                "--partition",
                "1",
                "--to",
                &last.to_string()
            ],
            vec![]
        )
        .await,
        format!("orders\t1\t{last}\n")
    );
    let printed = ok(
        &url,
        &["consume", "orders", "--group", "g", "--print-offsets"],
        vec![],
    )
    .await;
    let fields: Vec<&str> = printed.trim_end().split('\t').collect();
    assert_eq!(fields[..3], ["1", &last.to_string(), ""], "{printed:?}");
    assert!(
        values.contains(&fields[3].to_string()) && printed.lines().count() == 1,
        "{printed:?}"
    );

    // A member reads what the group assigns from the group's positions: usage errors.
    let out = daftka(
        &url,
        &["consume", "orders", "--group", "g", "--partition", "0"],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // --follow: a record produced while the member waits is printed; Ctrl-C ends the command
    // successfully and the member leaves, so the group has no members right away.
    let mut child = Command::new(env!("CARGO_BIN_EXE_daftka"))
        .args([
            "--url", &url, "consume", "orders", "--group", "g", "--follow",
        ])
        .env_remove("DAFTKA_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the daftka binary");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.expect("a line")).is_err() {
                break;
            }
        }
    });
    eventually(
        "the following member to own every partition",
        Duration::from_secs(10),
        async || {
            let d = get_json(&format!("{url}/v1/groups/g")).await;
            let owned = d["partitions"]
                .as_array()
                .is_some_and(|ps| ps.len() == 3 && ps.iter().all(|p| p["member"].is_string()));
            (d["state"] == "stable" && owned).then_some(())
        },
    )
    .await;
    assert_eq!(
        ok(&url, &["produce", "orders"], b"late\n".to_vec()).await,
        ""
    );
    let line = tokio::task::spawn_blocking(move || lines_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .expect("the receiving task")
        .expect("the member prints the new record");
    assert_eq!(line, "late");
    eventually(
        "the member to commit what it printed",
        Duration::from_secs(10),
        async || {
            let d = get_json(&format!("{url}/v1/groups/g")).await;
            (d["lag"] == 0).then_some(())
        },
    )
    .await;
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("the waiting task")
        .expect("the child exits");
    assert!(
        out.status.success(),
        "Ctrl-C ends a member cleanly: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    reader.join().expect("the stdout reader");
    let d = get_json(&format!("{url}/v1/groups/g")).await;
    assert_eq!(d["state"], "empty", "the member left: {d}");
    assert!(d["members"].as_array().is_some_and(Vec::is_empty), "{d}");

    // Two members at once share a new group: between them every record is printed (at least
    // once: a hand-over may repeat what a member printed but could not commit), and the group
    // ends committed at the high watermarks.
    let hwms = high_watermarks(&url, "orders").await;
    let args = ["consume", "orders", "--group", "pair", "--print-offsets"];
    let (a, b) = tokio::join!(ok(&url, &args, vec![]), ok(&url, &args, vec![]));
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in a.lines().chain(b.lines()) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line:?}");
        let p: u64 = fields[0].parse().expect("partition");
        seen.entry(p)
            .or_default()
            .push(fields[1].parse().expect("offset"));
    }
    for (p, hwm) in &hwms {
        let mut offsets = seen.remove(p).unwrap_or_default();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets, (0..*hwm).collect::<Vec<_>>(), "partition {p}");
    }
    assert_eq!(committed(&url, "pair", "orders").await, hwms);
}
