//! The lab harness shared by the netlab tests (`shared/netlab/netlab.sh`): when to skip,
//! bringing the lab up and down, and running this test binary as one node per namespace.
//!
//! A lab test runs only with `HAWSER_NETLAB=1`, as root with `ip`, `nft` and the lab script
//! available. Without `HAWSER_NETLAB=1`, [`Lab::up`] prints "skipped: ..." and the test returns
//! (and passes); with it (`.ci/run` sets it where the lab is expected), anything missing fails
//! the test, naming what is missing. Each node is
//! this test binary re-executed through `ip netns exec h<id>`, running only its child test,
//! which reads its node id from `HAWSER_NETLAB_CHILD` ([`child_id`]). Traffic goes only to
//! the lab's 10.77.0.0/24 inside its namespaces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The lab script: `HAWSER_NETLAB_SH`, or `shared/netlab/netlab.sh` beside the workspace.
fn netlab() -> PathBuf {
    std::env::var_os("HAWSER_NETLAB_SH").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/netlab/netlab.sh"
            ))
        },
        PathBuf::from,
    )
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the lab is expected: `HAWSER_NETLAB=1`.
fn expected() -> bool {
    std::env::var("HAWSER_NETLAB").ok().as_deref() == Some("1")
}

/// What the lab lacks on this machine, if anything.
fn missing() -> Option<String> {
    let uid = match Command::new("id").arg("-u").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(e) => {
            return Some(format!(
                "`id -u` could not run ({e}), so root cannot be checked"
            ))
        }
    };
    if uid != "0" {
        return Some(format!("root (running as uid {uid})"));
    }
    for cmd in ["ip", "nft"] {
        if !have(cmd) {
            return Some(format!(
                "`{cmd}` on the PATH (apt-get install iproute2 nftables)"
            ));
        }
    }
    if !netlab().exists() {
        return Some(format!(
            "the lab script {} (or HAWSER_NETLAB_SH naming it)",
            netlab().display()
        ));
    }
    None
}

/// Runs `netlab.sh` with `args`; panics if it fails.
pub fn lab(args: &[&str]) {
    let status = Command::new("bash")
        .arg(netlab())
        .args(args)
        .status()
        .expect("run netlab.sh");
    assert!(status.success(), "netlab.sh {args:?} failed");
}

/// A running lab, torn down however the test ends.
pub struct Lab;

impl Lab {
    /// Brings up a lab of `nodes` hosts. Without `HAWSER_NETLAB=1`, prints why the test is
    /// skipped and returns `None`.
    ///
    /// # Panics
    /// With `HAWSER_NETLAB=1`, when the lab cannot be built: it names what is missing.
    pub fn up(nodes: u64) -> Option<Lab> {
        if !expected() {
            println!("skipped: set HAWSER_NETLAB=1 to run the netlab test");
            return None;
        }
        if let Some(what) = missing() {
            panic!("HAWSER_NETLAB=1 but the netlab cannot be built: it needs {what}");
        }
        let running = Lab;
        lab(&["up", &nodes.to_string()]);
        Some(running)
    }

    /// Starts nodes `1..=nodes`, each this test binary running only `child_test` inside its
    /// namespace, with its stdout piped.
    pub fn spawn_children(&self, nodes: u64, child_test: &str) -> Vec<Child> {
        let exe = std::env::current_exe().unwrap();
        (1..=nodes)
            .map(|id| {
                Command::new("ip")
                    .args(["netns", "exec", &format!("h{id}")])
                    .arg(&exe)
                    .args(["--exact", child_test, "--nocapture", "--test-threads", "1"])
                    .env("HAWSER_NETLAB_CHILD", id.to_string())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn child node")
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(netlab()).arg("down").status();
    }
}

/// Waits for every child and returns each one's stdout, in node order.
pub fn outputs(children: Vec<Child>) -> Vec<String> {
    children
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
        .collect()
}

/// This process's node id when it runs as a lab child, `None` otherwise (the child test then
/// returns at once).
pub fn child_id() -> Option<u64> {
    std::env::var("HAWSER_NETLAB_CHILD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
}

/// Lab host `id`'s address, port `port`.
pub fn addr(id: u64, port: u16) -> SocketAddr {
    format!("10.77.0.{id}:{port}").parse().unwrap()
}

/// The rest of a line after `tag` (libtest may print "test ... " before the child's first
/// line).
pub fn field<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.split_once(tag).map(|(_, rest)| rest)
}
