//! The `daftka` CLI client end to end: the real binary as a child process against a real
//! in-process node over HTTP.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
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
