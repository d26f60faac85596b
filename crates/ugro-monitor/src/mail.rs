//! Building and sending the summary email with lettre (multipart text + HTML + inline chart; STARTTLS, TLS or plain; the SMTP password from a file or a systemd credential).
