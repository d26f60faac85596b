//! Building and sending the summary email with lettre (multipart text + HTML + inline chart; STARTTLS, TLS or plain; the SMTP password from a file or a systemd credential).
//!
//! [`build_message`] makes the MIME message (pure, no I/O). [`send_raw`] delivers already
//! formatted bytes (what the outbox stores) to the configured server with one deadline over
//! everything: connect, TLS, AUTH, the transfer and QUIT. The password is read at send time
//! and never appears in logs or errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, TlsMode};

/// Content-ID of the inline chart; the HTML refers to it as `<img src="cid:gpu-chart">`.
pub const CHART_CID: &str = "gpu-chart";
/// Name of the systemd credential (`LoadCredential=smtp-password:…`) holding the password.
pub const CREDENTIAL_NAME: &str = "smtp-password";
/// Bound on the polite QUIT after a delivery (outside the caller's deadline it never matters
/// for the outcome).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(2);

/// The content of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    /// The text/plain body (the Markdown summary).
    pub text: String,
    /// The text/html body; refers to the chart as `cid:gpu-chart`.
    pub html: String,
    /// The chart, attached inline as image/png with Content-ID `<gpu-chart>`.
    pub chart_png: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid {field} address {value:?}: {cause}")]
    Address {
        field: &'static str,
        value: String,
        cause: lettre::address::AddressError,
    },
    #[error("no recipients: set email.to")]
    NoRecipients,
    #[error("building the email: {0}")]
    Build(String),
    #[error(
        "email.username is set but no SMTP password is available: set email.password_file or provide the systemd credential {CREDENTIAL_NAME} ($CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME})"
    )]
    NoPassword,
    #[error("cannot read the SMTP password from {path}: {cause}")]
    PasswordFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the SMTP password file {path} is empty")]
    PasswordEmpty { path: PathBuf },
    #[error("cannot read email.ca_file {path}: {cause}")]
    CaFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("email.ca_file {path} holds no PEM certificate")]
    CaInvalid { path: PathBuf },
    #[error("TLS set-up for SMTP server {server}: {cause}")]
    TlsSetup {
        server: String,
        cause: lettre::transport::smtp::Error,
    },
    #[error("{op} via SMTP server {server} ({mode}): {cause}")]
    Smtp {
        op: &'static str,
        server: String,
        mode: &'static str,
        cause: lettre::transport::smtp::Error,
    },
    #[error("{op} via SMTP server {server} ({mode}): no answer within {deadline:?}")]
    Timeout {
        op: &'static str,
        server: String,
        mode: &'static str,
        deadline: Duration,
    },
}

fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Starttls => "starttls",
        TlsMode::Tls => "tls",
        TlsMode::None => "no TLS",
    }
}

/// `host:port` of the configured server, as errors and logs name it.
pub fn server_name(cfg: &EmailConfig) -> String {
    if cfg.smtp_host.contains(':') {
        format!("[{}]:{}", cfg.smtp_host, cfg.smtp_port)
    } else {
        format!("{}:{}", cfg.smtp_host, cfg.smtp_port)
    }
}

fn parse_mailbox(field: &'static str, value: &str) -> Result<Mailbox, MailError> {
    value
        .parse::<Mailbox>()
        .map_err(|source| MailError::Address {
            field,
            value: value.to_string(),
            cause: source,
        })
}

/// Builds the summary email: `multipart/alternative` of text/plain and either text/html or,
/// with a chart, `multipart/related` (text/html + the inline image/png `<gpu-chart>`). `date`
/// becomes the Date header.
pub fn build_message(
    cfg: &EmailConfig,
    email: &Email,
    date: DateTime<Utc>,
) -> Result<Message, MailError> {
    if cfg.to.is_empty() {
        return Err(MailError::NoRecipients);
    }
    let mut builder = Message::builder()
        .from(parse_mailbox("email.from", &cfg.from)?)
        .subject(email.subject.clone())
        .date(SystemTime::from(date))
        .user_agent(format!("ugro-monitor/{}", env!("CARGO_PKG_VERSION")));
    for to in &cfg.to {
        builder = builder.to(parse_mailbox("email.to", to)?);
    }
    let alternative = MultiPart::alternative().singlepart(SinglePart::plain(email.text.clone()));
    let html = SinglePart::html(email.html.clone());
    let body = match &email.chart_png {
        Some(png) => {
            let png_type =
                ContentType::parse("image/png").map_err(|e| MailError::Build(e.to_string()))?;
            alternative.multipart(MultiPart::related().singlepart(html).singlepart(
                Attachment::new_inline(CHART_CID.to_string()).body(png.clone(), png_type),
            ))
        }
        None => alternative.singlepart(html),
    };
    builder
        .multipart(body)
        .map_err(|e| MailError::Build(e.to_string()))
}

/// Where the SMTP password comes from: `password_file` when set, else the systemd credential
/// in `credentials_dir` (`$CREDENTIALS_DIRECTORY`) when that is set. Pure.
pub fn password_path(cfg: &EmailConfig, credentials_dir: Option<&Path>) -> Option<PathBuf> {
    cfg.password_file
        .clone()
        .or_else(|| credentials_dir.map(|d| d.join(CREDENTIAL_NAME)))
}

/// The password with one trailing line break (`\n` or `\r\n`) removed.
fn trim_password(text: &str) -> &str {
    text.strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text)
}

/// Reads the password for `cfg.username`, or `None` when no username is configured.
async fn credentials(cfg: &EmailConfig) -> Result<Option<Credentials>, MailError> {
    let Some(user) = &cfg.username else {
        return Ok(None);
    };
    let creds_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let path = password_path(cfg, creds_dir.as_deref()).ok_or(MailError::NoPassword)?;
    let text =
        tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| MailError::PasswordFile {
                path: path.clone(),
                cause: source,
            })?;
    let password = trim_password(&text);
    if password.is_empty() {
        return Err(MailError::PasswordEmpty { path });
    }
    Ok(Some(Credentials::new(user.clone(), password.to_string())))
}

/// TLS parameters for `cfg.smtp_host`: the webpki roots plus `ca_file` when set.
async fn tls_parameters(cfg: &EmailConfig) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(cfg.smtp_host.clone())
        .certificate_store(CertificateStore::WebpkiRoots);
    if let Some(path) = &cfg.ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|source| MailError::CaFile {
                path: path.clone(),
                cause: source,
            })?;
        // lettre accepts a file with no certificate at all; that is a mistake worth naming.
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(MailError::CaInvalid { path: path.clone() });
        }
        let cert =
            Certificate::from_pem(&pem).map_err(|_| MailError::CaInvalid { path: path.clone() })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|source| MailError::TlsSetup {
        server: server_name(cfg),
        cause: source,
    })
}

/// The transport for `cfg`: STARTTLS required (`starttls`), TLS from the first byte (`tls`),
/// or plain (`none`), to `smtp_host:smtp_port`, with `timeout` on every SMTP command.
async fn transport(
    cfg: &EmailConfig,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls = match cfg.tls {
        TlsMode::Starttls => Tls::Required(tls_parameters(cfg).await?),
        TlsMode::Tls => Tls::Wrapper(tls_parameters(cfg).await?),
        TlsMode::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)
        .port(cfg.smtp_port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(creds) = credentials(cfg).await? {
        builder = builder.credentials(creds);
    }
    Ok(builder.build())
}

/// Delivers the formatted message `raw` to `to` with envelope sender `envelope_from` through
/// the server of `cfg`, all within `deadline`. Addresses may be bare (`a@b`) or with a name
/// (`Name <a@b>`).
pub async fn send_raw(
    cfg: &EmailConfig,
    envelope_from: &str,
    to: &[String],
    raw: &[u8],
    deadline: Duration,
) -> Result<(), MailError> {
    let server = server_name(cfg);
    let mode = mode_name(cfg.tls);
    let from: Address = parse_mailbox("envelope sender", envelope_from)?.email;
    let rcpts = to
        .iter()
        .map(|t| parse_mailbox("recipient", t).map(|m| m.email))
        .collect::<Result<Vec<_>, _>>()?;
    if rcpts.is_empty() {
        return Err(MailError::NoRecipients);
    }
    let envelope = lettre::address::Envelope::new(Some(from), rcpts)
        .map_err(|e| MailError::Build(e.to_string()))?;
    let transport = transport(cfg, deadline).await?;
    let outcome = tokio::time::timeout(deadline, transport.send_raw(&envelope, raw)).await;
    // Politely close the pooled connection (QUIT); bounded, and irrelevant to the outcome.
    let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, transport.shutdown()).await;
    match outcome {
        Ok(Ok(_response)) => {
            tracing::debug!(%server, recipients = to.len(), "email accepted by the SMTP server");
            Ok(())
        }
        Ok(Err(source)) => Err(MailError::Smtp {
            op: "sending email",
            server,
            mode,
            cause: source,
        }),
        Err(_) => Err(MailError::Timeout {
            op: "sending email",
            server,
            mode,
            deadline,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cfg() -> EmailConfig {
        EmailConfig {
            enabled: true,
            smtp_host: "localhost".into(),
            smtp_port: 587,
            tls: TlsMode::Starttls,
            username: None,
            password_file: None,
            ca_file: None,
            from: "ugro-monitor <ugro@lab.test>".into(),
            to: vec!["team@lab.test".into(), "Ops <ops@lab.test>".into()],
        }
    }

    fn email(chart: bool) -> Email {
        Email {
            subject: "[ugro] 2026-11-22 — 2 running".into(),
            text: "## Experiment Statistics\n".into(),
            html: "<h2>Experiment Statistics</h2><img src=\"cid:gpu-chart\">".into(),
            chart_png: chart.then(|| vec![0x89, b'P', b'N', b'G', 1, 2, 3]),
        }
    }

    #[test]
    fn message_structure_with_and_without_chart() {
        let date = DateTime::parse_from_rfc3339("2026-11-22T23:55:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = build_message(&cfg(), &email(true), date).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("multipart/related"), "{raw}");
        assert!(raw.contains("Content-ID: <gpu-chart>"), "{raw}");
        assert!(raw.contains("Content-Type: image/png"), "{raw}");
        assert!(raw.contains("Date: Sun, 22 Nov 2026 23:55:00"), "{raw}");
        let env = m.envelope();
        assert_eq!(env.from().unwrap().to_string(), "ugro@lab.test");
        assert_eq!(env.to().len(), 2);

        let plain = build_message(&cfg(), &email(false), date).unwrap();
        let raw = String::from_utf8(plain.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"));
        assert!(!raw.contains("multipart/related"));
        assert!(!raw.contains("image/png"));
    }

    #[test]
    fn bad_addresses_and_no_recipients_are_named() {
        let mut c = cfg();
        c.to = vec![];
        assert!(matches!(
            build_message(&c, &email(false), Utc::now()),
            Err(MailError::NoRecipients)
        ));
        let mut c = cfg();
        c.to = vec!["not an address".into()];
        let e = build_message(&c, &email(false), Utc::now()).unwrap_err();
        assert!(e.to_string().contains("email.to"), "{e}");
        assert!(e.to_string().contains("not an address"), "{e}");
    }

    #[test]
    fn password_file_wins_over_the_systemd_credential() {
        let mut c = cfg();
        let creds = Path::new("/run/credentials/ugro-monitor.service");
        assert_eq!(password_path(&c, None), None);
        assert_eq!(
            password_path(&c, Some(creds)),
            Some(creds.join("smtp-password"))
        );
        c.password_file = Some("/etc/ugro/smtp-password".into());
        assert_eq!(
            password_path(&c, Some(creds)),
            Some(PathBuf::from("/etc/ugro/smtp-password"))
        );
    }

    #[test]
    fn one_trailing_line_break_is_trimmed() {
        assert_eq!(trim_password("s3cret\n"), "s3cret");
        assert_eq!(trim_password("s3cret\r\n"), "s3cret");
        assert_eq!(trim_password("s3cret"), "s3cret");
        assert_eq!(trim_password(" s3cret \n\n"), " s3cret \n");
    }

    #[tokio::test]
    async fn unreadable_password_file_names_the_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.username = Some("ugro".into());
        c.password_file = Some(dir.path().join("missing"));
        let e = credentials(&c).await.unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        c.password_file = Some(empty);
        assert!(matches!(
            credentials(&c).await,
            Err(MailError::PasswordEmpty { .. })
        ));
    }

    #[tokio::test]
    async fn ca_file_without_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let mut c = cfg();
        c.ca_file = Some(f.clone());
        let e = tls_parameters(&c).await.err().unwrap();
        assert!(matches!(e, MailError::CaInvalid { .. }), "{e}");
        assert!(e.to_string().contains(&f.display().to_string()));
    }

    #[tokio::test]
    async fn refused_connection_names_operation_and_server() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = cfg();
        c.smtp_host = "127.0.0.1".into();
        c.smtp_port = port;
        c.tls = TlsMode::None;
        let e = send_raw(
            &c,
            "ugro@lab.test",
            &["team@lab.test".to_string()],
            b"Subject: x\r\n\r\nx\r\n",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("sending email"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
}
