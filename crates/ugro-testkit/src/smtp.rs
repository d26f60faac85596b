//! A real SMTP server for tests: Debian's aiosmtpd on 127.0.0.1 writing to a Maildir, with an optional STARTTLS certificate made on the fly.
//!
//! The server is `/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox
//! DIR` (plus `--tlscert/--tlskey` for STARTTLS or `--smtpscert/--smtpskey` for implicit TLS).
//! With AUTH, a small launcher script runs the same aiosmtpd `SMTP` class and `Mailbox` handler
//! with an `authenticator`. [`TestCa`] makes a CA and a leaf certificate for
//! `localhost`/`127.0.0.1` signed by it, so clients can verify the server for real.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The interpreter that has Debian's python3-aiosmtpd (the `python3` first on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";
const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A throw-away certificate authority and a server certificate for `localhost` and
/// `127.0.0.1` signed by it, as PEM files in a temp dir.
#[derive(Debug)]
pub struct TestCa {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// Generates the CA and the leaf (ECDSA P-256) and writes `ca.pem`, `cert.pem`, `key.pem`.
    pub fn generate() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ugro-test-ca")
            .tempdir()
            .expect("create CA temp dir");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A distinct name per CA, so a client trusting another TestCa sees an unknown issuer.
        let name = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().to_string());
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("ugro-testkit CA {}", name.unwrap_or_default()),
        );
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("generate CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf with CA");

        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        fs::write(&ca, ca_cert.pem()).expect("write ca.pem");
        fs::write(&cert, leaf_cert.pem()).expect("write cert.pem");
        fs::write(&key, leaf_key.serialize_pem()).expect("write key.pem");
        Self { dir, ca, cert, key }
    }

    /// The CA certificate (PEM) a client must trust.
    pub fn ca_pem(&self) -> &Path {
        &self.ca
    }

    /// The server certificate (PEM) for `localhost` and `127.0.0.1`.
    pub fn cert_pem(&self) -> &Path {
        &self.cert
    }

    /// The server's private key (PEM, PKCS#8).
    pub fn key_pem(&self) -> &Path {
        &self.key
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// How the server speaks TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, no TLS offered.
    #[default]
    Plain,
    /// STARTTLS offered and required before mail (aiosmtpd's `require_starttls`).
    Starttls { cert: PathBuf, key: PathBuf },
    /// TLS from the first byte (SMTPS).
    Implicit { cert: PathBuf, key: PathBuf },
}

/// How to start an [`SmtpServer`].
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    pub tls: SmtpTls,
    /// Require AUTH (PLAIN/LOGIN) with this user and password.
    pub auth: Option<(String, String)>,
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
}

impl SmtpOptions {
    pub fn plain() -> Self {
        Self::default()
    }

    pub fn starttls(ca: &TestCa) -> Self {
        Self {
            tls: SmtpTls::Starttls {
                cert: ca.cert_pem().to_path_buf(),
                key: ca.key_pem().to_path_buf(),
            },
            ..Self::default()
        }
    }

    pub fn implicit_tls(ca: &TestCa) -> Self {
        Self {
            tls: SmtpTls::Implicit {
                cert: ca.cert_pem().to_path_buf(),
                key: ca.key_pem().to_path_buf(),
            },
            ..Self::default()
        }
    }

    pub fn with_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    pub fn on_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// A running aiosmtpd. Dropping it kills the server.
#[derive(Debug)]
pub struct SmtpServer {
    dir: tempfile::TempDir,
    maildir: PathBuf,
    log_path: PathBuf,
    opts: SmtpOptions,
    port: u16,
    child: Option<Child>,
}

/// Panics with the fix when `/usr/bin/python3` cannot import aiosmtpd (checked once).
pub fn require_aiosmtpd() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECK.get_or_init(|| {
        match Command::new(PYTHON)
            .args(["-c", "import aiosmtpd, aiosmtpd.handlers, aiosmtpd.smtp"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "{PYTHON} cannot import aiosmtpd ({}): run `apt-get install -y python3-aiosmtpd`",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!(
                "cannot run {PYTHON}: {e}: run `apt-get install -y python3 python3-aiosmtpd`"
            )),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

impl SmtpServer {
    /// Starts aiosmtpd; panics (with its log) if it does not listen within 15 s.
    pub fn start(opts: SmtpOptions) -> Self {
        require_aiosmtpd();
        let dir = tempfile::Builder::new()
            .prefix("ugro-smtp")
            .tempdir()
            .expect("create smtp temp dir");
        let maildir = dir.path().join("Maildir");
        let log_path = dir.path().join("aiosmtpd.log");
        let mut s = Self {
            maildir,
            log_path,
            port: 0,
            child: None,
            opts: opts.clone(),
            dir,
        };
        if s.opts.auth.is_some() {
            s.write_launcher();
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            s.port = opts.port.unwrap_or_else(crate::sshd::free_port);
            match s.spawn_and_wait() {
                Ok(()) => break,
                Err(e) if opts.port.is_none() && attempts < 5 && e.contains("in use") => continue,
                Err(e) => panic!("aiosmtpd did not start: {e}\naiosmtpd log:\n{}", s.log()),
            }
        }
        s
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Maildir messages are delivered into.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The server's temp dir (Maildir, log, launcher).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// aiosmtpd's stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The raw bytes of every delivered message (Maildir `new/` and `cur/`), oldest first.
    /// aiosmtpd's Mailbox handler adds `X-Peer`, `X-MailFrom` and `X-RcptTo` headers.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut found: Vec<(SystemTime, String, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for e in entries.filter_map(|e| e.ok()) {
                let path = e.path();
                if !path.is_file() {
                    continue;
                }
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((mtime, e.file_name().to_string_lossy().to_string(), path));
            }
        }
        found.sort();
        found
            .into_iter()
            .filter_map(|(_, _, p)| fs::read(p).ok())
            .collect()
    }

    /// The messages when at least `n` arrived; panics once `timeout` has passed since `start`.
    fn enough_messages(&self, n: usize, start: Instant, timeout: Duration) -> Option<Vec<Vec<u8>>> {
        let m = self.messages();
        if m.len() >= n {
            return Some(m);
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {n} message(s), have {}\naiosmtpd log:\n{}",
            m.len(),
            self.log()
        );
        None
    }

    /// Waits until at least `n` messages arrived; panics after `timeout` with the server log.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            if let Some(m) = self.enough_messages(n, start, timeout) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`SmtpServer::wait_for_messages`] for async tests (does not block the runtime).
    pub async fn wait_for_messages_async(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            if let Some(m) = self.enough_messages(n, start, timeout) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server and waits until the port no longer listens (deadline 10 s), so
    /// clients see "connection refused" like a mail server that is down.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let exited = child.try_wait().ok().flatten().is_some();
            if exited && !crate::sshd::is_listening(self.port) {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "ugro-testkit: aiosmtpd on port {} not stopped within 10 s",
                    self.port
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the server again on the same port with the same options and Maildir (stops it
    /// first if it runs). Panics with the log if it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().unwrap_or_else(|e| {
            panic!(
                "aiosmtpd restart on port {} failed: {e}\naiosmtpd log:\n{}",
                self.port,
                self.log()
            )
        });
    }

    fn launcher_path(&self) -> PathBuf {
        self.dir.path().join("smtpd_launcher.py")
    }

    /// The launcher used with AUTH: aiosmtpd's own `SMTP` + `Mailbox` handler, an
    /// authenticator accepting one user, and the same TLS contexts as `python3 -m aiosmtpd`.
    /// Settings come from environment variables so the password is not on the command line.
    fn write_launcher(&self) {
        let script = r#"# written by ugro-testkit: aiosmtpd with AUTH
import asyncio, os, ssl
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

host = os.environ["SMTPD_HOST"]
port = int(os.environ["SMTPD_PORT"])
mode = os.environ["SMTPD_MODE"]
user = os.environ["SMTPD_USER"].encode()
password = os.environ["SMTPD_PASSWORD"].encode()

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == user and auth_data.password == password)
    return AuthResult(success=ok, handled=False)

def context():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.check_hostname = False
    ctx.load_cert_chain(os.environ["SMTPD_CERT"], os.environ["SMTPD_KEY"])
    return ctx

handler = Mailbox(os.environ["SMTPD_MAILDIR"])
starttls = context() if mode == "starttls" else None
smtps = context() if mode == "implicit" else None

def factory():
    return SMTP(handler, tls_context=starttls, require_starttls=starttls is not None,
                authenticator=authenticator, auth_required=True,
                auth_require_tls=(mode == "starttls"))

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
server = loop.run_until_complete(loop.create_server(factory, host=host, port=port, ssl=smtps))
print(f"listening on {host}:{port} ({mode}, AUTH required)", flush=True)
loop.run_forever()
"#;
        fs::write(self.launcher_path(), script).expect("write smtpd launcher");
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(PYTHON);
        // Unbuffered, so the log is complete when a test fails.
        cmd.arg("-u");
        if let Some((user, password)) = &self.opts.auth {
            let (mode, cert, key) = match &self.opts.tls {
                SmtpTls::Plain => ("plain", None, None),
                SmtpTls::Starttls { cert, key } => ("starttls", Some(cert), Some(key)),
                SmtpTls::Implicit { cert, key } => ("implicit", Some(cert), Some(key)),
            };
            cmd.arg(self.launcher_path())
                .env("SMTPD_HOST", "127.0.0.1")
                .env("SMTPD_PORT", self.port.to_string())
                .env("SMTPD_MODE", mode)
                .env("SMTPD_USER", user)
                .env("SMTPD_PASSWORD", password)
                .env("SMTPD_MAILDIR", &self.maildir);
            if let (Some(c), Some(k)) = (cert, key) {
                cmd.env("SMTPD_CERT", c).env("SMTPD_KEY", k);
            }
        } else {
            cmd.args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{}", self.port));
            match &self.opts.tls {
                SmtpTls::Plain => {}
                SmtpTls::Starttls { cert, key } => {
                    cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
                }
                SmtpTls::Implicit { cert, key } => {
                    cmd.arg("--smtpscert").arg(cert).arg("--smtpskey").arg(key);
                }
            }
            cmd.args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&self.maildir);
        }
        cmd
    }

    /// Spawns the server and waits until it listens; `Err` has the reason.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let _ = writeln!(
            log,
            "--- ugro-testkit: starting aiosmtpd on 127.0.0.1:{} ({:?}{})",
            self.port,
            self.opts.tls,
            if self.opts.auth.is_some() {
                ", AUTH"
            } else {
                ""
            }
        );
        let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let stdout = log
            .try_clone()
            .map_err(|e| format!("dup log file handle: {e}"))?;
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run {PYTHON}: {e} (apt-get install -y python3-aiosmtpd)")
            })?;
        self.child = Some(child);
        crate::wait_listening(
            &mut self.child,
            self.port,
            "aiosmtpd",
            &self.log_path,
            log_start,
            START_TIMEOUT,
        )
        .inspect_err(|_| self.stop())
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_server_accepts_and_stores_a_message() {
        let server = SmtpServer::start(SmtpOptions::plain());
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let mut read = |s: &mut std::net::TcpStream| {
            use std::io::Read;
            let n = s.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        };
        assert!(read(&mut s).starts_with("220"));
        for (cmd, code) in [
            ("HELO t\r\n", "250"),
            ("MAIL FROM:<a@b.test>\r\n", "250"),
            ("RCPT TO:<c@d.test>\r\n", "250"),
            ("DATA\r\n", "354"),
            ("Subject: hi\r\n\r\nbody\r\n.\r\n", "250"),
        ] {
            s.write_all(cmd.as_bytes()).unwrap();
            let answer = read(&mut s);
            assert!(answer.starts_with(code), "{cmd:?} -> {answer:?}");
        }
        let msgs = server.wait_for_messages(1, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&msgs[0]);
        assert!(text.contains("Subject: hi"), "{text}");
        assert!(text.contains("X-RcptTo: c@d.test"), "{text}");
    }

    #[test]
    fn stop_refuses_connections_and_restart_serves_the_same_port() {
        let mut server = SmtpServer::start(SmtpOptions::plain());
        let port = server.port();
        server.stop();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        server.restart();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// The leaf verifies against the CA for the names a client uses, and not against another CA.
    #[test]
    fn test_ca_signs_a_leaf_for_localhost_and_127_0_0_1() {
        let ca = TestCa::generate();
        let other = TestCa::generate();
        let verify = |ca_file: &Path, name_opt: &str, name: &str| {
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca_file)
                .arg(name_opt)
                .arg(name)
                .arg(ca.cert_pem())
                .output()
                .expect("run openssl verify")
        };
        let ok = verify(ca.ca_pem(), "-verify_hostname", "localhost");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let ok = verify(ca.ca_pem(), "-verify_ip", "127.0.0.1");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let wrong_name = verify(ca.ca_pem(), "-verify_hostname", "example.org");
        assert!(!wrong_name.status.success());
        let wrong_ca = verify(other.ca_pem(), "-verify_hostname", "localhost");
        assert!(!wrong_ca.status.success());
        assert!(
            fs::read_to_string(ca.key_pem())
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
}
