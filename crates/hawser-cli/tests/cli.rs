//! Runs the built `hawser` binary: the demo, the echo server with the echo client over
//! 127.0.0.1, and the refusal of invalid parameters. Every child is bounded by a timeout and
//! killed when its guard drops.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hawser");

/// Fast, lossy-friendly protocol settings both ends of the lossy test share.
const FAST: &[&str] = &[
    "--epoch-ms",
    "50",
    "--epoch-limit",
    "20",
    "--window",
    "8",
    "--max-unacked",
    "8",
    "--max-backoff",
    "2",
];

/// A child process that is killed (and reaped) when dropped.
struct Guard {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished child printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Guard {
    /// Starts `hawser args...` with stdout and stderr captured (collected by threads, so the
    /// pipes never fill) and stdin as given.
    fn spawn(args: &[&str], stdin: Stdio) -> Guard {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn hawser");
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let stdout = child.stdout.take().map(|mut o| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = o.read_to_string(&mut s);
                s
            })
        });
        Guard {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for the child to exit within `timeout`; panics (killing it) if it does not.
    fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let (out, err) = self.collect();
                    panic!(
                        "hawser did not exit within {timeout:?}\nstdout:\n{out}\nstderr:\n{err}"
                    );
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let (stdout, stderr) = self.collect();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    fn collect(&mut self) -> (String, String) {
        let out = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (out, err)
    }
}

/// An echo server running in the background, killed on drop.
struct EchoServer {
    guard: Guard,
    addr: String,
}

impl EchoServer {
    /// Starts `hawser lsp echo-server` with `args` and waits for its "listening on" line.
    fn start(args: &[&str]) -> EchoServer {
        let mut all = vec!["lsp", "echo-server"];
        all.extend_from_slice(args);
        let mut child = Command::new(BIN)
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn echo-server");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut rest = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        let mut guard = Guard {
            child,
            stdout: Some(reader),
            stderr,
        };
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = guard.child.kill();
                let (out, err) = guard.collect();
                panic!("echo-server did not start\nstdout:\n{out}\nstderr:\n{err}");
            }
        };
        EchoServer { guard, addr }
    }
}

/// Runs `hawser args...` with no input and waits for it.
fn run(args: &[&str], timeout: Duration) -> Finished {
    Guard::spawn(args, Stdio::null()).finish(timeout)
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("local_addr").port()
}

fn assert_success(f: &Finished, what: &str) {
    assert!(
        f.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        f.status,
        f.stdout,
        f.stderr
    );
}

/// The value printed on a summary line `  <name>: <value>`.
fn summary_value(stdout: &str, name: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn demo_with_small_counts_passes_and_prints_the_table() {
    let f = run(
        &["demo", "--clients", "3", "--messages", "60", "--seed", "7"],
        Duration::from_secs(60),
    );
    assert_success(&f, "demo");
    for row in [
        "messages sent",
        "echoes delivered",
        "lost",
        "duplicated",
        "out of order",
        "retransmissions",
        "heartbeats",
        "elapsed",
        "dropped",
    ] {
        assert!(f.stdout.contains(row), "no {row:?} row in:\n{}", f.stdout);
    }
    let value = |name: &str| {
        f.stdout
            .lines()
            .find_map(|l| {
                let rest = l.trim().strip_prefix(name)?;
                rest.trim().parse::<u64>().ok()
            })
            .unwrap_or_else(|| panic!("no {name:?} value in:\n{}", f.stdout))
    };
    assert_eq!(value("messages sent"), 180);
    assert_eq!(value("echoes delivered"), 180);
    assert_eq!(value("lost"), 0);
    assert_eq!(value("out of order"), 0);
    assert!(
        f.stdout
            .contains("every acknowledged write read back from both survivors: yes"),
        "{}",
        f.stdout
    );
    assert!(f.stdout.contains("elected after"), "{}", f.stdout);
    assert!(f.stdout.contains("result: PASS"), "{}", f.stdout);
}

#[test]
fn demo_over_json_passes() {
    let f = run(
        &[
            "demo",
            "--clients",
            "2",
            "--messages",
            "40",
            "--wire",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_success(&f, "demo --wire json");
    assert!(f.stdout.contains("json wire"), "{}", f.stdout);
}

#[test]
fn echo_client_count_over_binary() {
    let server = EchoServer::start(&["--port", "0"]);
    let f = run(
        &[
            "lsp",
            "echo-client",
            "--addr",
            &server.addr,
            "--count",
            "200",
        ],
        Duration::from_secs(60),
    );
    assert_success(&f, "echo-client --count 200");
    assert_eq!(summary_value(&f.stdout, "sent"), Some(200), "{}", f.stdout);
    assert_eq!(summary_value(&f.stdout, "received"), Some(200));
    assert_eq!(summary_value(&f.stdout, "missing"), Some(0));
    assert_eq!(summary_value(&f.stdout, "duplicates"), Some(0));
    assert_eq!(summary_value(&f.stdout, "out of order"), Some(0));
    drop(server);
}

#[test]
fn echo_client_count_over_json_on_a_chosen_port() {
    let port = free_port().to_string();
    let server = EchoServer::start(&["--port", &port, "--wire", "json"]);
    assert!(
        server.addr.ends_with(&format!(":{port}")),
        "{}",
        server.addr
    );
    let f = run(
        &[
            "lsp",
            "echo-client",
            "--addr",
            &server.addr,
            "--count",
            "200",
            "--size",
            "100",
            "--wire",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert_success(&f, "echo-client --wire json --count 200");
    assert_eq!(
        summary_value(&f.stdout, "received"),
        Some(200),
        "{}",
        f.stdout
    );
    assert_eq!(summary_value(&f.stdout, "missing"), Some(0));
}

#[test]
fn echo_with_injected_loss_on_both_ends() {
    let mut args = vec!["--port", "0", "--drop-percent", "10", "--fault-seed", "11"];
    args.extend_from_slice(FAST);
    let server = EchoServer::start(&args);
    let mut args = vec![
        "lsp",
        "echo-client",
        "--addr",
        &server.addr,
        "--count",
        "100",
        "--drop-percent",
        "10",
        "--fault-seed",
        "12",
    ];
    args.extend_from_slice(FAST);
    let f = run(&args, Duration::from_secs(60));
    assert_success(&f, "lossy echo-client");
    assert_eq!(
        summary_value(&f.stdout, "received"),
        Some(100),
        "{}",
        f.stdout
    );
    assert_eq!(summary_value(&f.stdout, "missing"), Some(0));
    assert!(
        summary_value(&f.stdout, "retransmits").is_some_and(|r| r > 0),
        "loss was injected, so some message must have been resent:\n{}",
        f.stdout
    );
}

#[test]
fn echo_client_sends_stdin_lines() {
    let server = EchoServer::start(&["--port", "0"]);
    let mut client = Guard::spawn(
        &["lsp", "echo-client", "--addr", &server.addr],
        Stdio::piped(),
    );
    {
        let mut stdin = client.child.stdin.take().expect("stdin");
        stdin.write_all(b"hello\nworld\n").expect("write stdin");
        // Dropping stdin closes it: the client waits for the echoes, then exits.
    }
    let f = client.finish(Duration::from_secs(60));
    assert_success(&f, "echo-client with stdin");
    assert_eq!(f.stdout, "hello\nworld\n");
}

#[cfg(unix)]
#[test]
fn echo_server_closes_on_interrupt() {
    let server = EchoServer::start(&["--port", "0"]);
    let f = run(
        &["lsp", "echo-client", "--addr", &server.addr, "--count", "5"],
        Duration::from_secs(60),
    );
    assert_success(&f, "echo-client");
    let pid = server.guard.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let f = server.guard.finish(Duration::from_secs(30));
    assert_success(&f, "echo-server after Ctrl-C");
    assert!(f.stderr.contains("connected"), "{}", f.stderr);
    assert!(f.stderr.contains("server closed"), "{}", f.stderr);
}

#[test]
fn zero_window_is_refused_with_status_2() {
    for args in [
        &[
            "lsp",
            "echo-client",
            "--addr",
            "127.0.0.1:9",
            "--window",
            "0",
        ][..],
        &["lsp", "echo-server", "--port", "0", "--window", "0"][..],
    ] {
        let f = run(args, Duration::from_secs(20));
        assert_eq!(f.status.code(), Some(2), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains("window"), "{args:?}: {}", f.stderr);
    }
}

#[test]
fn other_invalid_settings_are_refused_with_status_2() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "lsp",
                "echo-client",
                "--addr",
                "127.0.0.1:9",
                "--epoch-ms",
                "0",
            ],
            "epoch",
        ),
        (
            &[
                "lsp",
                "echo-client",
                "--addr",
                "127.0.0.1:9",
                "--max-unacked",
                "0",
            ],
            "max_unacked",
        ),
        (
            &["lsp", "echo-server", "--port", "0", "--drop-percent", "150"],
            "drop_percent",
        ),
        (&["lsp", "echo-client", "--addr", "nonsense"], "HOST:PORT"),
    ];
    for (args, name) in cases {
        let f = run(args, Duration::from_secs(20));
        assert_eq!(f.status.code(), Some(2), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains(name), "{args:?}: {}", f.stderr);
    }
}

#[test]
fn echo_client_usage_errors_exit_with_status_2() {
    for (args, says) in [
        (&["lsp", "echo-client"][..], "--addr"),
        (
            &[
                "lsp",
                "echo-client",
                "--addr",
                "127.0.0.1:9",
                "--no-such-flag",
            ][..],
            "--no-such-flag",
        ),
        (
            &[
                "lsp",
                "echo-client",
                "--addr",
                "127.0.0.1:9",
                "--count",
                "many",
            ][..],
            "--count",
        ),
    ] {
        let f = run(args, Duration::from_secs(20));
        assert_eq!(f.status.code(), Some(2), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains(says), "{args:?}: {}", f.stderr);
        assert!(f.stdout.is_empty(), "{args:?}: {}", f.stdout);
    }
}

#[test]
fn demo_usage_errors_exit_with_status_2() {
    for (args, says) in [
        (&["demo", "--no-such-flag"][..], "--no-such-flag"),
        (&["demo", "--clients", "0"][..], "--clients"),
        (&["demo", "--size", "100000"][..], "--size"),
        (&["demo", "--drop-percent", "150"][..], "drop"),
        (&["demo", "--seed", "not-a-number"][..], "--seed"),
    ] {
        let f = run(args, Duration::from_secs(20));
        assert_eq!(f.status.code(), Some(2), "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains(says), "{args:?}: {}", f.stderr);
        assert!(!f.stdout.contains("result:"), "{args:?}: {}", f.stdout);
    }
}

/// A demo whose echoes cannot all come back (every datagram dropped) ends at its timeout with
/// `result: FAIL`, the failing clients named, and status 1.
#[test]
fn demo_that_cannot_deliver_fails_with_status_1() {
    let f = run(
        &[
            "demo",
            "--clients",
            "2",
            "--messages",
            "5",
            "--drop-percent",
            "100",
            "--timeout",
            "2",
            "--nodes",
            "0",
            "--raft-writes",
            "0",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(f.status.code(), Some(1), "{}\n{}", f.stdout, f.stderr);
    assert!(f.stdout.contains("result: FAIL"), "{}", f.stdout);
    assert!(
        f.stdout.contains("client 0: connect: no answer"),
        "{}",
        f.stdout
    );
    assert!(!f.stdout.contains("result: PASS"), "{}", f.stdout);
}

#[test]
fn two_nodes_exchange_a_line_over_aes_gcm_sessions() {
    let (p1, p2) = (free_port(), free_port());
    let (a1, a2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let node = |id: &str, listen: &str, peer: String, linger_ms: &str| {
        let args = [
            "node",
            "--id",
            id,
            "--listen",
            listen,
            "--peer",
            &peer,
            "--cipher",
            "aesgcm",
            "--linger-ms",
            linger_ms,
        ];
        Guard::spawn(&args, Stdio::piped())
    };
    // Node 2 keeps its standard input open until node 1 is done; node 1 lingers to deliver.
    let mut receiver = node("2", &a2, format!("1={a1}"), "100");
    let stdin2 = receiver.child.stdin.take();
    std::thread::sleep(Duration::from_millis(300));
    let mut sender = node("1", &a1, format!("2={a2}"), "2000");
    let mut stdin1 = sender.child.stdin.take().expect("stdin of node 1");
    stdin1
        .write_all(b"@2 hello over aes\n")
        .expect("write a line");
    drop(stdin1);
    let sent = sender.finish(Duration::from_secs(20));
    assert_success(&sent, "node 1");
    drop(stdin2);
    let received = receiver.finish(Duration::from_secs(20));
    assert_success(&received, "node 2");
    assert!(
        received.stdout.contains("hello over aes"),
        "node 2 printed:\n{}\nstderr:\n{}\nnode 1 stderr:\n{}",
        received.stdout,
        received.stderr,
        sent.stderr
    );
}

/// One HTTP/1.1 request to `addr`; the status code and body, or `None` if the connection
/// failed.
fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

#[test]
fn three_raft_processes_form_a_cluster_and_answer_over_http() {
    let listen: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let api: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let dir = std::env::temp_dir().join(format!("hawser-raft-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nodes: Vec<Guard> = (0..3)
        .map(|i| {
            let id = (i + 1).to_string();
            let mut args = vec![
                "raft", "--id", &id, "--listen", &listen[i], "--http", &api[i],
            ];
            let peers: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("{}={}", j + 1, listen[j]))
                .collect();
            for p in &peers {
                args.extend(["--peer", p.as_str()]);
            }
            // Node 1 keeps its data on disk, the others in memory.
            let data = dir.join("n1").to_string_lossy().into_owned();
            if i == 0 {
                args.extend(["--data-dir", data.as_str()]);
            }
            args.extend(["--run-for", "60"]);
            Guard::spawn(&args, Stdio::null())
        })
        .collect();
    // A write through node 2 once the cluster has formed (node 1 bootstraps it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http(&api[1], "PUT", "/kv/color", "blue") {
            Some((200, _)) => break,
            other => {
                assert!(Instant::now() < deadline, "no write accepted: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let (status, body) = http(&api[2], "GET", "/kv/color", "").expect("GET");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"blue\""), "{body}");
    let (status, body) = http(&api[0], "GET", "/kv/absent", "").expect("GET");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, body) = http(&api[0], "GET", "/status", "").expect("status");
    assert_eq!(status, 200, "{body}");
    for field in ["\"leader\"", "\"term\"", "\"last_applied\"", "\"members\""] {
        assert!(body.contains(field), "no {field} in {body}");
    }
    assert!(
        dir.join("n1").join("node.key").exists(),
        "node 1's key kept with its data"
    );
    let outputs: Vec<Finished> = nodes
        .into_iter()
        .map(|mut g| {
            let _ = g.child.kill();
            g.finish(Duration::from_secs(10))
        })
        .collect();
    assert!(
        outputs[1].stderr.contains("no --data-dir"),
        "an in-memory node says so: {}",
        outputs[1].stderr
    );
    assert!(
        !outputs[0].stderr.contains("no --data-dir"),
        "{}",
        outputs[0].stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn echo_client_without_a_server_names_the_address_and_the_wire() {
    let addr = format!("127.0.0.1:{}", free_port());
    let f = run(
        &[
            "lsp",
            "echo-client",
            "--addr",
            &addr,
            "--count",
            "3",
            "--epoch-ms",
            "50",
            "--epoch-limit",
            "3",
            "--wire",
            "json",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(f.status.code(), Some(1), "{}", f.stderr);
    assert!(
        f.stderr.contains(&format!("no answer from {addr}")),
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("is an echo server running there"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("--wire json"), "{}", f.stderr);
}

#[test]
fn echo_client_shows_progress_and_hints_at_cautious_settings_under_loss() {
    // The reference wire and window: one message in flight, resent at epochs only, so each
    // loss costs an epoch.
    let slow = ["--epoch-ms", "100", "--epoch-limit", "50", "--wire", "json"];
    let mut args = vec!["--port", "0"];
    args.extend_from_slice(&slow);
    let server = EchoServer::start(&args);
    let mut args = vec![
        "lsp",
        "echo-client",
        "--addr",
        &server.addr,
        "--count",
        "30",
        "--drop-percent",
        "25",
        "--fault-seed",
        "5",
        "--timeout",
        "60",
    ];
    args.extend_from_slice(&slow);
    let f = run(&args, Duration::from_secs(90));
    assert_success(&f, "slow echo-client");
    assert!(
        f.stderr.contains("echoed"),
        "no progress line:\n{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("hint: messages are being resent"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("--window"), "{}", f.stderr);
}

#[test]
fn user_facing_text_has_no_rust_debug_forms() {
    let f = run(
        &["lsp", "echo-client", "--addr", "nonsense"],
        Duration::from_secs(20),
    );
    assert_eq!(f.status.code(), Some(2), "{}", f.stderr);
    for form in ["Some(", "Instant {", "b\"", "\"nonsense\""] {
        assert!(!f.stderr.contains(form), "{form} in {}", f.stderr);
    }
}
