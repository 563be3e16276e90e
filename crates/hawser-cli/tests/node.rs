//! Runs `hawser node` processes over 127.0.0.1: lines exchanged over each transport, the
//! errors of a peer dialled on a transport it does not listen on, the configuration file,
//! the summary, and the refusal of bad settings. Every wait is for an awaited line, bounded by
//! a timeout; every child is killed when its guard drops.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hawser");

/// How long any one awaited line may take.
const WAIT: Duration = Duration::from_secs(20);

/// A running `hawser` whose output lines arrive on channels as they are written.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines,
    err: Lines,
}

/// The lines of one output stream: those already seen, and the channel of the next ones.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
    reader: Option<JoinHandle<()>>,
}

impl Lines {
    fn new(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            reader: Some(reader),
        }
    }

    /// Waits for a line containing `needle`; `None` after `timeout` or at the end.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.rx.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// Every line, once the stream has ended.
    fn drain(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.seen.extend(self.rx.try_iter());
        self.seen.join("\n")
    }
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn hawser");
        let stdin = child.stdin.take();
        let out = Lines::new(child.stdout.take().expect("stdout"));
        let err = Lines::new(child.stderr.take().expect("stderr"));
        Proc {
            child,
            stdin,
            out,
            err,
        }
    }

    /// A node started with `args` whose "listening on" line has been printed.
    fn node(args: &[&str]) -> Proc {
        let mut all = vec!["node"];
        all.extend_from_slice(args);
        let mut p = Proc::spawn(&all);
        if p.err.wait_for("listening on", WAIT).is_none() {
            p.fail("the node did not start");
        }
        p
    }

    fn write(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn expect_out(&mut self, needle: &str) -> String {
        match self.out.wait_for(needle, WAIT) {
            Some(l) => l,
            None => self.fail(&format!("no {needle:?} on stdout")),
        }
    }

    fn expect_err(&mut self, needle: &str) -> String {
        match self.err.wait_for(needle, WAIT) {
            Some(l) => l,
            None => self.fail(&format!("no {needle:?} on stderr")),
        }
    }

    /// Waits for the exit; the status and both outputs.
    fn finish(mut self) -> (ExitStatus, String, String) {
        self.close_stdin();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                self.fail("did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.out.drain(), self.err.drain())
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "{what}\nstdout:\n{}\nstderr:\n{}",
            self.out.drain(),
            self.err.drain()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both TCP and UDP a moment ago.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("local_addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs `hawser args...` to its end with no input.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .expect("run hawser");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two nodes on `scheme` exchange a line each way, then print their summaries.
fn exchange_over(scheme: &str) {
    let (a1, a2) = (
        format!("{scheme}://127.0.0.1:{}", free_port()),
        format!("{scheme}://127.0.0.1:{}", free_port()),
    );
    let node = |id: &str, listen: &str, peer: String| {
        Proc::node(&[
            "--id",
            id,
            "--listen",
            listen,
            "--peer",
            &peer,
            "--linger-ms",
            "200",
        ])
    };
    let mut n1 = node("1", &a1, format!("2={a2}"));
    let mut n2 = node("2", &a2, format!("1={a1}"));
    let listening = n1.expect_err("listening on");
    assert!(listening.contains(&a1), "{listening}");
    n1.write(format!("@2 hello over {scheme}\n").as_bytes());
    n2.expect_out(&format!("1 reliable: hello over {scheme}"));
    n2.write(format!("@1 reply over {scheme}\n").as_bytes());
    n1.expect_out(&format!("2 reliable: reply over {scheme}"));
    n1.expect_err("peer 2 up");
    for (n, peer) in [(n1, "2"), (n2, "1")] {
        let (status, _, err) = n.finish();
        assert!(status.success(), "{err}");
        assert!(err.contains("summary of node"), "{err}");
        let row = err
            .lines()
            .find(|l| l.split_whitespace().next() == Some(peer))
            .unwrap_or_else(|| panic!("no summary row for {peer}:\n{err}"));
        // peer, sent, received: one each way.
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[1..3], ["1", "1"], "{row}");
        assert!(!err.contains('\u{1b}'), "colour codes on a pipe:\n{err}");
    }
}

#[test]
fn two_nodes_exchange_lines_over_tcp() {
    exchange_over("tcp");
}

#[test]
fn two_nodes_exchange_lines_over_lsp() {
    exchange_over("lsp");
}

#[test]
fn two_nodes_exchange_lines_over_ws() {
    exchange_over("ws");
}

#[test]
fn a_peer_dialled_on_a_transport_it_does_not_listen_on_is_reported_on_both_sides() {
    let (p1, p2) = (free_port(), free_port());
    let a1 = format!("127.0.0.1:{p1}");
    let a2 = format!("127.0.0.1:{p2}");
    // Node 2 listens on TCP only; node 1 dials it over LSP, node 3 over WebSocket.
    let mut n2 = Proc::node(&["--id", "2", "--listen", &a2, "--peer", &format!("1={a1}")]);
    let mut n1 = Proc::node(&[
        "--id",
        "1",
        "--listen",
        &a1,
        "--peer",
        &format!("2=lsp://{a2}"),
    ]);
    n1.write(b"@2 lost?\n");
    n1.expect_err("cannot connect to peer");
    let hint = n1.expect_err(&format!("does not answer at lsp://{a2}"));
    assert!(hint.contains("--listen lsp://"), "{hint}");
    n2.expect_err("malformed (a peer dialling lsp://");
    let a3 = format!("127.0.0.1:{}", free_port());
    let mut n3 = Proc::node(&[
        "--id",
        "3",
        "--listen",
        &a3,
        "--peer",
        &format!("2=ws://{a2}"),
    ]);
    n3.write(b"@2 lost too?\n");
    n3.expect_err(&format!("does not answer at ws://{a2}"));
    n2.expect_err("the peer dials ws:// an address that listens for tcp://");
}

#[test]
fn a_config_file_sets_the_network_id_and_lease_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("hawser-node-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a1, a2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let file = |id: u32, listen: &str, peer: &str| {
        let path = dir.join(format!("n{id}.toml"));
        let text = format!(
            "id = {id}\nlisten = [\"{listen}\"]\npeers = [\"{peer}\"]\n\n\
             [settings]\nnetwork_id = \"blue\"\n\n\
             [settings.reach.engine]\nlease = {{ fixed = \"300ms\" }}\nreachable_for = \"900ms\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let f1 = file(1, &a1, &format!("2={a2}"));
    let f2 = file(2, &a2, &format!("1={a1}"));
    let mut n1 = Proc::node(&["--config", &f1]);
    let listening = n1.expect_err("listening on");
    assert!(listening.contains("network id blue"), "{listening}");
    let mut n2 = Proc::node(&["--config", &f2]);
    n1.write(b"@2 over blue\n");
    n2.expect_out("1 reliable: over blue");
    n1.expect_err("peer 2 up");
    // Node 2 stops: with 300 ms leases node 1 says so within a second or two.
    drop(n2);
    n1.expect_err("peer 2 down");
    // A flag overrides the file: node 3 is on another network and never reaches node 1.
    let mut n3 = Proc::node(&[
        "--config",
        &f2,
        "--id",
        "2",
        "--network-id",
        "red",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let listening = n3.expect_err("listening on");
    assert!(listening.contains("network id red"), "{listening}");
    n3.write(b"@1 over red\n");
    n3.expect_err("cannot connect to peer");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_and_config_files_exit_with_status_2_and_say_why() {
    let dir = std::env::temp_dir().join(format!("hawser-node-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let typo = write("typo.toml", "id = 1\n[settings]\nidle_timout = \"1s\"\n");
    let top = write("top.toml", "id = 1\nlisten_on = [\"127.0.0.1:1\"]\n");
    let duration = write(
        "duration.toml",
        "[settings]\nidle_timeout = \"10 parsecs\"\n",
    );
    let zero = write("zero.toml", "[settings]\nmax_frame = 0\n");
    let missing = dir.join("absent.toml").to_string_lossy().into_owned();
    let listen = "127.0.0.1:0";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--config", &typo, "--listen", listen], "idle_timout"),
        (vec!["--config", &top, "--listen", listen], "listen_on"),
        (
            vec!["--config", &duration, "--id", "1", "--listen", listen],
            "parsecs",
        ),
        (
            vec!["--config", &zero, "--id", "1", "--listen", listen],
            "max_frame",
        ),
        (
            vec!["--config", &missing, "--id", "1"],
            "cannot read config file",
        ),
        (vec!["--listen", listen], "no node id"),
        (vec!["--id", "1"], "no listen address"),
        (
            vec!["--id", "1", "--listen", listen, "--network-id", ""],
            "--network-id",
        ),
        (
            vec!["--id", "1", "--listen", listen, "--lease-ms", "0"],
            "--lease-ms",
        ),
        (
            vec!["--id", "1", "--listen", "udp://127.0.0.1:1"],
            "unknown transport",
        ),
        (
            vec!["--id", "1", "--listen", listen, "--peer", "2"],
            "ID=ADDR",
        ),
        (
            vec!["--id", "1", "--listen", "no.such.host.invalid:7"],
            "cannot resolve",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["node"];
        all.extend(&args);
        let (code, err) = run(&all);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: no {needle:?} in {err}");
        if args.contains(&typo.as_str()) {
            assert!(err.contains(&typo), "the file is named: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_in_use_fails_with_status_1_and_one_copy_of_the_os_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["node", "--id", "1", "--listen", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn json_output_a_bad_line_and_unreliable_lines_before_a_session_key() {
    let (a1, a2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut n2 = Proc::node(&[
        "--id",
        "2",
        "--listen",
        &a2,
        "--peer",
        &format!("1={a1}"),
        "--json",
        "--unreliable",
    ]);
    let mut n1 = Proc::node(&[
        "--id",
        "1",
        "--listen",
        &a1,
        "--peer",
        &format!("2={a2}"),
        "--unreliable",
        "--log-format",
        "json",
    ]);
    // Sent before any session exists: held until a datagram key has come, not lost.
    n1.write(b"@2 first datagram\n\xff\xfe not utf-8\n@2 after the bad line\n");
    n1.expect_err("held: no session has brought a datagram key");
    n1.expect_err("not UTF-8");
    let got = n2.expect_out("first datagram");
    let v: serde_json::Value = serde_json::from_str(&got).expect("a JSON message line");
    assert_eq!(v["event"], "message");
    assert_eq!(v["from"], 1);
    assert_eq!(v["delivery"], "unreliable");
    n2.expect_out("after the bad line");
    let (status, _, err) = n1.finish();
    assert!(status.success(), "{err}");
    for line in err.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(err.contains(r#""level":"WARN""#), "{err}");
    let (status, out, err) = n2.finish();
    assert!(status.success(), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("a summary line")).expect("JSON summary");
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["node"], 2);
    assert_eq!(summary["peers"][0]["id"], 1);
    assert_eq!(summary["peers"][0]["received"], 2);
    assert_eq!(summary["peers"][0]["dropped"], 0);
}

#[test]
fn keygen_show_prints_the_peer_id_of_a_key_file() {
    let dir = std::env::temp_dir().join(format!("hawser-keygen-show-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("n.key").to_string_lossy().into_owned();
    let _ = std::fs::remove_file(&key);
    let made = Command::new(BIN)
        .args(["keygen", "--out", &key])
        .output()
        .unwrap();
    assert!(made.status.success());
    let shown = Command::new(BIN)
        .args(["keygen", "--show", &key])
        .output()
        .unwrap();
    assert!(shown.status.success());
    assert_eq!(shown.stdout, made.stdout);
    let (code, err) = run(&["keygen", "--show", &dir.join("absent").to_string_lossy()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot read key file"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    let (code, err) = run(&["keygen"]);
    assert_eq!(code, Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hawser keygen --out` writes the key file readable and writable by its owner only (0600),
/// whatever the umask lets through, and never replaces an existing file.
#[cfg(unix)]
#[test]
fn keygen_writes_the_key_file_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;

    let dir = std::env::temp_dir().join(format!("hawser-keygen-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("n.key");
    let _ = std::fs::remove_file(&key);
    // A umask that would leave the file readable by everyone.
    let made = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" keygen --out \"$1\"")
        .arg(BIN)
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let before = std::fs::read(&key).unwrap();
    let (code, err) = run(&["keygen", "--out", &key.to_string_lossy()]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key file was replaced"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
