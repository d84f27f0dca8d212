//! Real network partitions between processes: one network namespace per host, each with a veth
//! link to a bridge in the test's own namespace (which carries an address on the bridge, so the
//! test reaches every host as a client), and nftables rules inside a host's namespace that drop its
//! traffic to and from the other hosts while the test's client traffic still passes.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); `.ci/run` installs them. [`Net::tooling`]
//! says what is missing. Everything is torn down on drop (namespaces, the bridge), and every
//! process started in a namespace is killed by pid first.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// How a host is cut off from the other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nothing from the other hosts reaches it and nothing it sends reaches them.
    Both,
    /// It sends, but nothing from the other hosts reaches it (a one-sided cut).
    Inbound,
}

/// One host: a network namespace with one address on the bridge.
pub struct Host {
    pub ns: String,
    pub ip: String,
}

/// A bridge and its hosts; torn down on drop.
pub struct Net {
    bridge: String,
    veths: Vec<String>,
    pub hosts: Vec<Host>,
    /// The test's own address on the bridge (its client traffic is never cut).
    pub gateway: String,
}

/// Runs a command, panicking with its output when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `nft -f -` inside namespace `ns` with `script` on stdin.
fn nft(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the nft script");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft in {ns} failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn found(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Net {
    /// `Ok` when this machine can build namespaces and cut them apart; else what is missing.
    pub fn tooling() -> Result<(), String> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let mut missing = Vec::new();
        if !root {
            missing.push("root");
        }
        for tool in ["ip", "nft"] {
            if !found(tool) {
                missing.push(tool);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("needs {}", missing.join(", ")))
        }
    }

    /// Creates a bridge and `n` hosts on a subnet of their own.
    pub fn create(n: usize) -> Net {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        // Unique per process and per call; interface names stay within 15 characters.
        let tag = format!("{}{}", pid % 100_000, k);
        let subnet = format!("10.{}.{}", 100 + pid % 100, (pid / 100 % 200 + k * 7) % 250);
        let bridge = format!("dkb{tag}");
        let gateway = format!("{subnet}.1");
        let mut net = Net {
            bridge: bridge.clone(),
            veths: Vec::new(),
            hosts: Vec::new(),
            gateway: gateway.clone(),
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &bridge,
        ]);
        run(&["ip", "link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("dk{tag}h{i}");
            let outer = format!("dkv{tag}h{i}");
            let inner = format!("dki{tag}h{i}");
            let ip = format!("{subnet}.{}", i + 2);
            run(&["ip", "netns", "add", &ns]);
            net.hosts.push(Host {
                ns: ns.clone(),
                ip: ip.clone(),
            });
            run(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            net.veths.push(outer.clone());
            run(&["ip", "link", "set", &inner, "netns", &ns]);
            run(&["ip", "link", "set", &outer, "master", &bridge]);
            run(&["ip", "link", "set", &outer, "up"]);
            let exec = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", &ns];
                all.extend_from_slice(args);
                run(&all);
            };
            exec(&["ip", "link", "set", "lo", "up"]);
            exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &inner]);
            exec(&["ip", "link", "set", &inner, "up"]);
        }
        net
    }

    /// Cuts host `i` off from every other host (`Cut::Both`), or only from what they send it
    /// (`Cut::Inbound`). The test's own traffic (from the bridge address) still passes.
    pub fn cut(&self, i: usize, how: Cut) {
        let others: Vec<&str> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, h)| h.ip.as_str())
            .collect();
        let set = others.join(", ");
        let mut script = format!(
            "table inet daftka_cut {{\n  chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n"
        );
        if how == Cut::Both {
            script.push_str(&format!(
                "  chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n"
            ));
        }
        script.push_str("}\n");
        nft(&self.hosts[i].ns, &script);
    }

    /// Removes the cut of host `i`.
    pub fn heal(&self, i: usize) {
        nft(&self.hosts[i].ns, "delete table inet daftka_cut\n");
    }

    /// A command that runs `program` inside host `i`'s namespace (`ip netns exec` execs it, so
    /// the child's pid is the program's).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].ns, program]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
        }
        for v in &self.veths {
            let _ = Command::new("ip")
                .args(["link", "del", v])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}
